"""`python -m jobs COMMAND ...`: the `deepfake` command line where it is not installed, as on
a Ray cluster's nodes with `ray job submit --working-dir . -- python -m jobs scan ...`."""

from jobs.cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m jobs")
