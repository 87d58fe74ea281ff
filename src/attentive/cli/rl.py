"""``attentive rl-data`` (offline datasets) and ``attentive rl-eval`` (returns of a Decision Transformer)."""

from __future__ import annotations

import math

from .common import add_device, add_model, load_model


def _number(text: str, flag: str) -> float:
    """A finite float, or a one-line error naming the flag and the bad value."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{flag} {text!r} is not a finite number")
    return value


def _require_gymnasium() -> None:
    import importlib.util

    if importlib.util.find_spec("gymnasium") is None:
        raise ValueError("offline RL needs gymnasium: pip install 'attentive[rl]'")


def run_data(args) -> int:
    from ..tasks.offline_rl import make_dataset

    _require_gymnasium()
    if args.episodes_per_policy <= 0:
        raise ValueError(f"--episodes-per-policy must be > 0, got {args.episodes_per_policy}")
    dataset = make_dataset(args.env, args.episodes_per_policy, args.seed, not args.stock, path=args.out)
    print(dataset.summary())
    print(f"saved {dataset.num_episodes} episodes to {args.out}")
    return 0


def run_eval(args) -> int:
    from ..models.decision import DecisionTransformer
    from ..interop.resolve import resolve
    from ..tasks.offline_rl import RLArtifacts, plot_target_sweep, sweep_targets

    _require_gymnasium()
    targets = [_number(t, "--target-return") for t in args.target_return or []]
    targets += [_number(t, "--targets") for t in args.targets or []]
    if args.episodes <= 0:
        raise ValueError(f"--episodes must be > 0, got {args.episodes}")
    where = resolve(args.model)  # the run folder's rl.json is read first: bad files fail before the model loads
    artifacts = RLArtifacts.load(where.path if where.path is not None else args.model)
    model = load_model(args, "decision-transformer").model
    device = next(model.parameters()).device
    if not isinstance(model, DecisionTransformer):
        raise ValueError(f"{args.model} holds a {type(model).__name__}, not a Decision Transformer")
    targets = targets or artifacts.targets
    if not targets:
        raise ValueError("give --target-return R or --targets R1 R2 ...")

    rows = sweep_targets(model, artifacts, targets, args.episodes, args.seed, device)
    last = args.seed + args.episodes - 1
    for row in rows:
        print(
            f"{artifacts.env_id} target {row['target']:g}: mean return {row['mean']:.1f} +/- {row['std']:.1f} "
            f"(min {row['min']:g}, max {row['max']:g}) over {args.episodes} episodes, seeds {args.seed}..{last}"
        )
    if artifacts.behaviour_returns:
        name, mean = artifacts.best_behaviour
        print(f"best behaviour policy in the data: {name}, mean return {mean:.1f}")
    if args.png:
        print(f"plot -> {plot_target_sweep(rows, artifacts, args.png)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "rl-data",
        help="generate an offline RL dataset (.npz) from a mix of behaviour policies "
        "(the one the dt-* recipes train on)",
    )
    p.add_argument("--env", default="CartPole-v1", help="gymnasium id: CartPole-v1, Acrobot-v1 (default CartPole-v1)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--episodes-per-policy", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="episode i of policy p resets with seed + p * episodes + i")
    p.add_argument(
        "--stock",
        action="store_true",
        help="only random, heuristic and epsilon-noisy heuristics (no parameter-noise heuristic)",
    )
    p.set_defaults(func=run_data)

    p = sub.add_parser("rl-eval", help="play a trained Decision Transformer at target returns; mean and std")
    add_model(p, "decision transformer run folder (with rl.json)", required=True)
    p.add_argument("--target-return", action="append", metavar="R", help="return to ask for (repeatable)")
    p.add_argument("--targets", nargs="+", metavar="R", help="several target returns (a sweep)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=10_000, help="episode i resets with seed + i (default 10000)")
    p.add_argument("--png", metavar="FILE", help="plot achieved vs target return")
    add_device(p)
    p.set_defaults(func=run_eval)
