"""``python -m imgstore`` runs the CLI."""

from imgstore.cli import main

if __name__ == "__main__":
    main()
