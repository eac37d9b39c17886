"""python -m inferbooster script.py args...  (or -m module args...): runs a Python program
with inferbooster.interpose() in effect."""

import runpy
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m inferbooster script.py [args...]\n"
              "       python -m inferbooster -m module [args...]\n"
              "Runs the program with PyTorch modules and ONNX Runtime sessions going\n"
              "through InferBooster (inferbooster.interpose()).")
        return 0 if argv else 2
    import inferbooster

    inferbooster.interpose()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("python -m inferbooster: -m needs a module name", file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    import os

    script = argv[0]
    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
