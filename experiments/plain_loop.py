"""The baseline the CPU quality bar is measured against: a plain training loop, on the quality bar's own split.

The CPU quality bar is set beside a plain 25-line loop (resnet18, 64 px, bf16, inverse weights, 8 epochs). This
script is that loop, written the way most HAM10000 notebooks write it, so that the library's result and the loop's
are compared on the same test images rather than on two different splits:

* images decoded once with PIL and squashed to 64 x 64 (as pskin's cache does), scaled to [0, 1];
* torchvision's ``resnet18(num_classes=3)`` from scratch, Adam at lr 1e-3, cross-entropy with inverse-frequency
  class weights n / (K n_c), bf16 autocast, batches of 64, random horizontal and vertical flips;
* after every epoch, accuracy and balanced accuracy on validation and test.

pskinlib is used only to find the data and to draw the split (the grouped protocol, split seed 0: the quality bar's
split; ``--split-seed N`` for the quality bar's other splits) and to score the predictions with the same metrics and
bootstrap intervals. The training loop itself is plain PyTorch.

Three results, none chosen by test: the epoch with the best validation balanced accuracy (the headline: the rule the
library's quality bar uses), the epoch with the best validation accuracy (the paper's rule), and the last epoch.
Writes ``<out>/plain-loop-<epochs>x<size>px/quality_bar.json`` in the quality bar's format, so the results chapter
shows it in the same table.

    PSKIN_DATA=../shared/data/ham10000 .venv/bin/python -m experiments.plain_loop --overwrite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="HAM10000 folder (default: $PSKIN_DATA, data/ham10000)")
    parser.add_argument("--epochs", type=int, default=8, help="default: 8")
    parser.add_argument("--image-size", type=int, default=64, help="pixels (default: 64; tests use less)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="default: bf16 autocast")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and batches (default: 0)")
    parser.add_argument("--split-seed", type=int, default=0, help="which grouped split (default: 0, the book's)")
    parser.add_argument("--out", default=str(Path("book") / "results" / "quality-bar"),
                        help="parent folder of the result (default: book/results/quality-bar)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result of the same setting")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs: need at least 1, got {args.epochs}.")
    if args.image_size < 16:
        parser.error(f"--image-size: need at least 16 pixels, got {args.image_size}.")
    if args.split_seed < 0:
        parser.error(f"--split-seed: need 0 or more, got {args.split_seed}.")
    if args.precision == "bf16":
        from pskinlib.train.device import SMALLEST_CPU_BF16_SIZE

        if args.image_size < SMALLEST_CPU_BF16_SIZE:
            parser.error(f"--precision bf16 needs --image-size {SMALLEST_CPU_BF16_SIZE} or more (CPU bf16 gradients "
                         f"of a stride-2 convolution on a 1x1 map are garbage; see pskinlib.train.device); use "
                         f"--precision "
                         f"fp32.")
    out = Path(args.out) / f"plain-loop-{args.epochs}x{args.image_size}px"
    if args.split_seed:
        out = out.with_name(f"{out.name}-split{args.split_seed}")
    if args.precision != "bf16":
        out = out.with_name(f"{out.name}-{args.precision}")
    if out.exists() and not args.overwrite:
        parser.error(f"--out: {out} exists; pass --overwrite to replace it.")

    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from sklearn.metrics import balanced_accuracy_score

    from pskinlib.data.ham10000 import load_ham10000
    from pskinlib.data.splits import make_split
    from pskinlib.io import write_json
    from pskinlib.metrics import report_with_intervals, summary_row
    from pskinlib.runs import QUALITY_BAR_SUMMARY
    from pskinlib.train.device import machine_description

    start = time.perf_counter()
    images = load_ham10000(args.data_dir)
    split = make_split(images, "grouped", seed=args.split_seed).merge(images.table[["image_id", "path"]], on="image_id")
    classes = images.classes
    size = args.image_size

    def decode(path: str) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))

    x, y = {}, {}
    for name, rows in split.groupby("split"):
        pixels = np.stack([decode(p) for p in rows["path"]])
        x[name] = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255)
        y[name] = torch.tensor([classes.index(d) for d in rows["dx"]])

    # ---- the plain loop ----
    torch.manual_seed(args.seed)
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16")
    model = torchvision.models.resnet18(num_classes=len(classes))
    counts = torch.bincount(y["train"], minlength=len(classes)).float()
    criterion = torch.nn.CrossEntropyLoss(weight=len(y["train"]) / (len(classes) * counts))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def predict(images: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad(), autocast:
            return torch.cat([model(images[i:i + 256]).float().softmax(1) for i in range(0, len(images), 256)])

    history, probabilities = [], []
    for epoch in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(y["train"])).split(64):
            images_batch = x["train"][batch]
            flip_h, flip_v = torch.rand(2, len(batch), 1, 1, 1) < 0.5
            images_batch = torch.where(flip_h, images_batch.flip(3), images_batch)
            images_batch = torch.where(flip_v, images_batch.flip(2), images_batch)
            with autocast:
                loss = criterion(model(images_batch).float(), y["train"][batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        probabilities.append({name: predict(x[name]).numpy() for name in ("val", "test")})
        row = {"epoch": epoch + 1, "train_loss": loss.item(), "seconds": time.perf_counter() - start}
        for name in ("val", "test"):
            predicted = probabilities[-1][name].argmax(1)
            row[f"{name}_accuracy"] = float((predicted == y[name].numpy()).mean())
            row[f"{name}_balanced_accuracy"] = balanced_accuracy_score(y[name].numpy(), predicted)
        history.append(row)
        print(f"epoch {epoch + 1}: val accuracy {row['val_accuracy']:.3f}, "
              f"balanced accuracy {row['val_balanced_accuracy']:.3f}", flush=True)
    # ---- end of the loop ----

    chosen = {
        "plain loop, epoch by val balanced accuracy": max(range(args.epochs),
                                                          key=lambda e: history[e]["val_balanced_accuracy"]),
        "plain loop, epoch by val accuracy (the paper's rule)": max(range(args.epochs),
                                                                    key=lambda e: history[e]["val_accuracy"]),
        "plain loop, last epoch": args.epochs - 1,
    }
    results = []
    for name, epoch in chosen.items():
        report = report_with_intervals(y["test"].numpy(), probabilities[epoch]["test"], classes)
        results.append({**summary_row(name, report), "epoch": epoch + 1})
    wall = time.perf_counter() - start
    summary = {
        "setting": f"plain loop (the yardstick), {args.epochs} epochs, {size} px"
                   + ("" if args.precision == "bf16" else f", {args.precision}")
                   + (f", split seed {args.split_seed}" if args.split_seed else ""),
        "wall_minutes": wall / 60, "members": 1, "epochs": args.epochs, "image_size": size,
        "precision": args.precision, "seed": args.seed, "split_seed": args.split_seed,
        "commands": [" ".join(["python -m experiments.plain_loop", *(argv if argv is not None else sys.argv[1:])])
                     .replace(f"--data-dir {args.data_dir}", "--data-dir $PSKIN_DATA")],
        "machine": machine_description(), "headline": results[0]["result"], "results": results,
        "history": history,
        "note": "Plain PyTorch loop on the quality bar's split (grouped protocol); pskinlib only draws the "
                "split and scores. Epochs chosen by validation, never by test.",
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / QUALITY_BAR_SUMMARY, summary)  # the folder's one file, replaced atomically
    for row in results:
        print(f"{row['result']} (epoch {row['epoch']}): test accuracy {row['accuracy']:.3f}, balanced accuracy "
              f"{row['balanced_accuracy']:.3f} (95% CI {row['balanced_accuracy_low']:.3f}-"
              f"{row['balanced_accuracy_high']:.3f})")
    print(f"{wall / 60:.1f} min wall; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
