"""Console entry point: runs the bundled native `lazyllm-edge` binary with the same arguments."""

import os
import sys
from pathlib import Path


def binary_path() -> Path:
    return Path(__file__).resolve().parent / "bin" / "lazyllm-edge"


def main() -> None:
    exe = binary_path()
    if not exe.is_file():
        sys.exit(f"lazyllm-edge binary not found at {exe}; reinstall the package")
    os.execv(str(exe), [str(exe), *sys.argv[1:]])


if __name__ == "__main__":
    main()
