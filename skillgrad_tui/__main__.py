from skillgrad_tui.cli import main

raise SystemExit(main())
