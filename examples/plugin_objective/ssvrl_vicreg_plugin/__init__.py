"""An ssvrl objective from outside ssvrl: VICReg for video (see :mod:`.vicreg`).

Importing :mod:`ssvrl_vicreg_plugin.vicreg` registers ``vicreg`` in ``ssvrl.objectives.OBJECTIVES``;
ssvrl imports it through the ``ssvrl.objectives`` entry point of this package, or through
``plugins: [ssvrl_vicreg_plugin.vicreg]`` in an experiment YAML.
"""
