"""`python -m assistant --help`"""
from assistant.cli import main

raise SystemExit(main())
