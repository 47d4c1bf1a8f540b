"""`dropt eval`: train the detector on a COCO set, score it on a real set."""

from __future__ import annotations

import json
import sys

from .options import add_json, path, positive_int, split_seed, threads, training_seed


def add(sub) -> None:
    p = sub.add_parser("eval", help="train the detector on a COCO set and score it on a real set's val and test splits")
    p.add_argument("synthetic", type=path, metavar="SYNTHETIC_DIR",
                   help="COCO dataset to train on (e.g. what `dropt render` wrote)")
    p.add_argument("--real", type=path, required=True, metavar="REAL_DIR",
                   help="real COCO set: val/ and test/ sub-sets, or one set split here with --split-seed")
    p.add_argument("--steps", type=positive_int, default=1200, help="training steps (default 1200)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per step (default 32)")
    p.add_argument("--images", type=positive_int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=training_seed, default=0, help="training seed, 0 to 2**64 - 1 (default 0)")
    p.add_argument("--split-seed", type=split_seed, default=0,
                   help="seed of the real val/test split, 0 to 2**32 - 1 (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:i]")
    p.add_argument("--threads", type=threads, default=None,
                   help="CPU threads for torch, 1 to 1024 (default: torch's)")
    add_json(p)


def cmd_eval(args) -> int:
    from evaluator.base import Fidelity
    from evaluator.detection import DetectionEvaluator
    from evaluator.real import check_real_splits, load_coco_real
    from generator.dataset import Dataset

    synthetic = Dataset.read_coco(args.synthetic)
    real = load_coco_real(args.real, seed=args.split_seed)
    check_real_splits(real, "--real")
    ev = DetectionEvaluator(real, device=args.device, threads=args.threads)
    fid = Fidelity(steps=args.steps, batch_size=args.batch_size, images=args.images)

    def progress(step: int, total: int, loss: float) -> None:
        if not args.json and (step == total or step % max(total // 10, 1) < max(total // 20, 1)):
            print(f"training: step {step}/{total}  loss {loss:.3f}", file=sys.stderr, flush=True)

    if not args.json:
        print(f"training the detector on {args.synthetic} ({len(synthetic)} images) on {ev.device}; "
              f"scoring on {real.describe()}", file=sys.stderr)
    m = ev.evaluate(synthetic, fid, args.seed, splits=("val", "test"), progress=progress)
    if args.json:
        print(json.dumps({"synthetic": args.synthetic, "real": args.real, "steps": args.steps, "seed": args.seed,
                          **m.to_dict()}))
        return 0
    for split in ("val", "test"):
        print(f"{split:4s} ({len(getattr(real, split))} images): mAP@[.5:.95] {m.extras[f'{split}_map']:.3f}  "
              f"AP50 {m.extras[f'{split}_ap50']:.3f}")
    print(f"trained {args.steps} steps on {int(m.extras['train_images'])} images in {m.timings['train']:.1f} s")
    return 0


COMMANDS = {"eval": cmd_eval}
