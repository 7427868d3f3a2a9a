"""Console entry point: runs the bundled native `lazyllm-edge` binary with the same arguments.

`lazyllm-edge calibrate ...` runs `python -m lazyllm_edge.calibrate ...`; `--lazy balanced|aggressive` becomes the
model's calibrated schedule where it has one (the native binary knows only the generic presets)."""

import os
import signal
import sys
from pathlib import Path


def binary_path() -> Path:
    return Path(__file__).resolve().parent / "bin" / "lazyllm-edge"


def with_calibrated_lazy(args):
    """The arguments with a preset after --lazy replaced by the model's calibrated spec, when it has one."""
    if "--lazy" not in args[:-1]:
        return args
    i = args.index("--lazy") + 1
    if args[i] not in ("balanced", "aggressive"):
        return args
    model = next((args[j + 1] for j in range(len(args) - 1) if args[j] in ("-m", "--model")), None)
    try:
        from .calibrate import calibrated_spec
        from .models import DEFAULT_MODEL, model_path

        path = Path(model) if model else model_path(DEFAULT_MODEL)
        spec = calibrated_spec(path, args[i])[1] if path.is_file() else None
    except Exception:  # the binary reports a bad model path itself
        spec = None
    return args if spec is None else args[:i] + [spec] + args[i + 1:]


def main() -> None:
    if sys.argv[1:2] == ["calibrate"]:
        from .calibrate import main as calibrate_main

        sys.exit(calibrate_main(sys.argv[2:]))
    exe = binary_path()
    if not exe.is_file():
        sys.exit(f"lazyllm-edge binary not found at {exe}; reinstall the package")
    # Python ignores SIGPIPE and exec keeps what is ignored: give the binary the default (`| head` ends it)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execv(str(exe), [str(exe), *with_calibrated_lazy(sys.argv[1:])])


if __name__ == "__main__":
    main()
