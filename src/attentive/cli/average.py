"""``attentive average``: average checkpoints into a new checkpoint folder (the paper averages the
last 5). Give the checkpoint folders, or ``--last N RUN_DIR`` for a run's newest N."""

from __future__ import annotations


def run(args) -> int:
    from ..train.average import recent_checkpoints, write_average

    if args.last is not None:
        if args.last < 1:
            raise ValueError(f"--last must be positive, got {args.last}")
        if len(args.checkpoints) != 1:
            raise ValueError("--last N takes exactly one run folder")
        paths = recent_checkpoints(args.checkpoints[0], args.last)
    else:
        if not args.checkpoints:
            raise ValueError("give checkpoint folders to average, or --last N RUN_DIR")
        paths = args.checkpoints
    out = write_average(paths, args.out)
    print(f"averaged {len(paths)} checkpoint(s) into {out}:")
    for p in paths:
        print(f"  {p}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("average", help="average the weights of several checkpoints")
    p.add_argument("--out", required=True, help="folder for the averaged checkpoint")
    p.add_argument("--last", type=int, help="average the newest N checkpoints of the run folder given")
    p.add_argument("checkpoints", nargs="*", help="checkpoint folders (or one run folder with --last)")
    p.set_defaults(func=run)
