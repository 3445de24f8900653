from celery_operator.cli import main

raise SystemExit(main())
