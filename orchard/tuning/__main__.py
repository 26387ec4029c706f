"""``python -m orchard.tuning --cache-dir CACHE``: extract llama.cpp's converters (see converter.py)."""

from orchard.tuning.converter import main

raise SystemExit(main())
