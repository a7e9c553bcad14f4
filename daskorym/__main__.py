"""``python -m daskorym``: the ``daskorym`` command line."""

from daskorym.cli import main

if __name__ == "__main__":
    main(prog_name="daskorym")
