"""``python -m scnn ...`` is the ``scnn`` command."""

from scnn.cli import main

if __name__ == "__main__":
    main()
