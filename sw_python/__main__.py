"""``python -m sw_python [-d] run [-p] <command ...>``."""

from skywalking.bootstrap.cli.sw_python import start

if __name__ == "__main__":
    start()
