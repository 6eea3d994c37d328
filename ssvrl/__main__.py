from ssvrl.cli import main

raise SystemExit(main())
