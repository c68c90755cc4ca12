from gradsight.cli import main

raise SystemExit(main())
