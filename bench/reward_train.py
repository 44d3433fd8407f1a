"""Reward-model training throughput: RewardLab's trainer against TRL's `RewardTrainer`, same data, same backbone.

Both train on the same synthetic preference pairs (prompts and replies of 20–200 tokens, log-uniform, so most are
short and a few are long, as in real chat data) with the same learning rate, batch size, epochs and max length.
Each trainer runs in its own process, so its peak RSS is its own; its time runs from loading the backbone to the
saved checkpoint (tokenisation included). Pairs are generated short enough that neither trainer truncates or
drops one (TRL drops pairs longer than `max_length`), so both do the same work.

Held-out prompts (a split by prompt) are scored afterwards in this process by one function, `held_out_accuracy`,
for both checkpoints; each model is fed the input format it was trained on: ours the `encode` text pair
(``[CLS] prompt [SEP] reply [SEP]``), TRL's its standard-format text (``[CLS] prompt reply [SEP]``).

TRL runs with its own defaults (gradient checkpointing on, dropout off, no warmup, fused AdamW) except bf16, which
is turned off on a CPU; `--trl-no-checkpointing` adds a TRL run without gradient checkpointing.

    .venv/bin/python bench/reward_train.py --pairs 640 --epochs 1 --trl-no-checkpointing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Nothing may be fetched from a hub: set before the Hugging Face libraries read their settings.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.reward import (
    EMBEDDED_BACKBONE,
    PairRecord,
    encode,
    pad_batch,
    resolve_model_path,
    split_by_group,
)

# --- synthetic preference data ----------------------------------------------------------------------------------

TOPICS = {
    "billing": "invoice refund charge card payment account subscription receipt".split(),
    "shipping": "parcel delivery courier tracking address package warehouse customs".split(),
    "password": "login password reset email account security code browser".split(),
    "python": "python error list function module import exception variable".split(),
    "cooking": "oven recipe flour butter sauce onion garlic dough".split(),
    "travel": "flight hotel luggage passport train ticket airport visa".split(),
    "garden": "tomato soil seeds compost watering leaves roots pots".split(),
    "fitness": "running knee stretching muscles shoes training pace injury".split(),
}
FILLER = [
    "I have been trying to sort this out for a few days now.",
    "It worked fine last week and nothing changed on my side as far as I know.",
    "My friend had the same problem and gave up.",
    "I read a couple of forum threads but they were quite old.",
    "Thanks in advance for any advice you can give me.",
    "Sorry if this is a basic question, I am new to all of this.",
    "I would rather not spend money on it if there is another way.",
    "The instructions I found were a bit confusing.",
    "It is not urgent, but I would like to understand what is going on.",
    "I can share more details if that helps.",
]
HELPFUL = [
    "Here is what I would do, step by step.",
    "First, check the {a} and make sure the {b} is set up correctly.",
    "The usual cause is the {a}, so start there before changing the {b}.",
    "If the {a} still looks wrong, try again with a fresh {b}.",
    "Most people fix this by looking at the {a} and then the {b}.",
    "You do not need to pay anything for the {a}; the {b} is included.",
    "I hope this helps, and let me know if the {a} gives you any more trouble.",
]
RUDE = [
    "This is a silly question about the {a}.",
    "Just search for {a} yourself, it is not hard.",
    "Honestly the {b} is your own fault.",
    "I do not have time to explain the {a} to you.",
    "Figure out the {b} on your own next time.",
]
REFUSAL = [
    "I cannot help with that.",
    "That is not something I can answer.",
    "Please ask someone else about this.",
]


def _text(rng: random.Random, target_words: int, templates: list[str], words: list[str]) -> str:
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < target_words:
        pool = templates if not sentences or rng.random() < 0.6 else FILLER
        a, b = rng.sample(words, 2)
        sentences.append(rng.choice(pool).format(a=a, b=b))
    return " ".join(sentences)


def _length(rng: random.Random) -> int:
    """Log-uniform words in [16, 160], about 20–200 tokens once punctuation and word pieces are counted."""
    return round(math.exp(rng.uniform(math.log(16), math.log(160))))


def synthetic_pairs(n: int, seed: int = 0) -> list[PairRecord]:
    """`n` pairs over n / 2 prompts. The chosen reply is helpful and on the prompt's topic; the rejected one is
    helpful but about another topic, on topic but rude, or a refusal. 5% of pairs are flipped (labelers disagree),
    so no model gets them all right."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    pairs = []
    for _ in range(math.ceil(n / 2)):
        topic = rng.choice(names)
        words = TOPICS[topic]
        question = f"I need help with my {topic}: what should I do about the {rng.choice(words)}?"
        prompt = (
            question + " " + _text(rng, _length(rng), [f"The {{a}} and the {{b}} are part of my {topic} issue."], words)
        )
        for _ in range(2):
            chosen = _text(rng, _length(rng), HELPFUL, words)
            mode = rng.choice(["off_topic", "rude", "refusal"])
            if mode == "off_topic":
                rejected = _text(rng, _length(rng), HELPFUL, TOPICS[rng.choice([t for t in names if t != topic])])
            elif mode == "rude":
                rejected = _text(rng, _length(rng), RUDE, words)
            else:
                rejected = rng.choice(REFUSAL) + " " + _text(rng, _length(rng) - 8, FILLER, words)
            if rng.random() < 0.05:
                chosen, rejected = rejected, chosen
            pairs.append(PairRecord(prompt=prompt, chosen=chosen, rejected=rejected, kind=mode))
    return pairs[:n]


# --- the two trainers, each in its own process ------------------------------------------------------------------


def trl_tokenizer(path: str):
    """The backbone's BERT tokenizer set up for TRL's standard format: TRL appends the EOS token as text, so the
    tokenizer adds only [CLS] in front, and [SEP] closes each sequence once (as in tests/trl_roundtrip.py)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    tokenizer.add_eos_token = False
    tokenizer.add_bos_token = True
    return tokenizer


def run_ours(records: list[PairRecord], args: argparse.Namespace, output: Path) -> dict:
    import transformers  # imported before the clock starts, as `trl` is in `run_trl`

    from ml.reward import RewardConfig, train_reward_model

    transformers.AutoModelForSequenceClassification  # noqa: B018 - resolve the lazy import now
    config = RewardConfig(
        base_model=args.base_model,
        max_length=args.max_length,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        eval_share=0.0,  # held out here, before either trainer sees the data
        seed=args.seed,
    )
    started = time.perf_counter()
    result = train_reward_model(records, config, output)
    seconds = time.perf_counter() - started
    return {"pairs": result.metrics["train_pairs"], "seconds": seconds, "loop_seconds": result.metrics["train_seconds"]}


def run_trl(records: list[PairRecord], args: argparse.Namespace, output: Path, *, checkpointing: bool) -> dict:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    dataset = Dataset.from_list(
        [{"prompt": r.prompt, "chosen": " " + r.chosen, "rejected": " " + r.rejected} for r in records]
    )
    trl_config = {
        "output_dir": str(output.parent / "trl-work"),
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.epochs,
        "max_length": args.max_length,
        "seed": args.seed,
        "bf16": False,  # TRL's default is bf16, which this CPU would only emulate
        "report_to": [],
        "save_strategy": "no",
        "disable_tqdm": True,
    }
    if not checkpointing:
        trl_config["gradient_checkpointing"] = False
    started = time.perf_counter()
    path = resolve_model_path(args.base_model)
    trainer = RewardTrainer(
        model=path, args=RewardConfig(**trl_config), train_dataset=dataset, processing_class=trl_tokenizer(path)
    )
    trained = len(trainer.train_dataset)
    stats = trainer.train()
    trainer.save_model(str(output))
    seconds = time.perf_counter() - started
    return {"pairs": trained, "seconds": seconds, "loop_seconds": stats.metrics["train_runtime"]}


def child(args: argparse.Namespace) -> None:
    records = [PairRecord(**row) for row in json.loads(Path(args.data).read_text())]
    output = Path(args.output)
    if args.child == "ours":
        result = run_ours(records, args, output)
    else:
        result = run_trl(records, args, output, checkpointing=args.child == "trl")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print("RESULT " + json.dumps(result), flush=True)


# --- held-out evaluation, one function for both checkpoints -----------------------------------------------------


def held_out_accuracy(model_dir: Path, features_of, held_out: list[PairRecord], batch_size: int = 32) -> float:
    """Share of held-out pairs whose chosen reply gets the higher reward; `features_of(tokenizer, prompts,
    replies)` builds each model's own input format."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [r.prompt for r in held_out]
    features = features_of(tokenizer, prompts, [r.chosen for r in held_out]) + features_of(
        tokenizer, prompts, [r.rejected for r in held_out]
    )
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    rewards = torch.empty(len(features))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = pad_batch([features[i] for i in index], tokenizer.pad_token_id)
            rewards[index] = model(**batch).logits.squeeze(-1).float()
    n = len(held_out)
    return float((rewards[:n] > rewards[n:]).float().mean())


def ours_features(max_length: int):
    def features_of(tokenizer, prompts, replies):
        return encode(tokenizer, prompts, replies, max_length)

    return features_of


def trl_features(base_model: str):
    tokenizer = trl_tokenizer(resolve_model_path(base_model))

    def features_of(_saved_tokenizer, prompts, replies):
        # Exactly TRL's preprocessing: prompt + chosen (which starts with a space) + EOS as text, then tokenised.
        texts = [f"{p} {r}{tokenizer.eos_token}" for p, r in zip(prompts, replies, strict=True)]
        return [{"input_ids": ids} for ids in tokenizer(texts)["input_ids"]]

    return features_of


# --- driver -----------------------------------------------------------------------------------------------------


def launch(name: str, data: Path, output: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--child", name, "--data", str(data), "--output", str(output),
        "--base-model", args.base_model, "--max-length", str(args.max_length), "--batch-size", str(args.batch_size),
        "--learning-rate", str(args.learning_rate), "--epochs", str(args.epochs), "--seed", str(args.seed),
    ]  # fmt: skip
    result = run_child(command, name, f"training {name}")
    print(f"  {name}: {result['seconds']:.1f} s wall, {result['cpu_seconds']:.1f} s CPU", file=sys.stderr, flush=True)
    return result


def run_child(command: list[str], name: str, what: str) -> dict:
    """Run one of our own child processes and return the dict its last ``RESULT {json}`` line printed, with the
    machine's load average before and after under "load". Anything else running on the machine shows in the load
    and slows the child: run the benches on an idle machine."""
    load = os.getloadavg()[0]
    print(f"… {what} (load average {load:.2f} on {os.cpu_count()} CPUs)", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our own script
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"{name} failed with exit status {done.returncode}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result["load"] = (load, os.getloadavg()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=640, help="pairs generated, held-out ones included")
    parser.add_argument("--eval-share", type=float, default=0.4, help="share of prompts held out")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--base-model", default=EMBEDDED_BACKBONE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trl-no-checkpointing", action="store_true", help="also run TRL without gradient checkpointing"
    )
    parser.add_argument("--child", choices=["ours", "trl", "trl-no-checkpointing"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    records = synthetic_pairs(args.pairs, args.seed)
    train, held_out = split_by_group(records, args.eval_share, args.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.base_model))
    prompts = [r.prompt for r in records] * 2
    replies = [r.chosen for r in records] + [r.rejected for r in records]
    lengths = [len(f["input_ids"]) for f in encode(tokenizer, prompts, replies, 10**6)]
    if max(lengths) > args.max_length:
        raise SystemExit(
            f"a pair has {max(lengths)} tokens > --max-length {args.max_length}: the trainers would differ"
        )
    mean = sum(lengths) / len(lengths)
    print(
        f"{len(train)} train pairs, {len(held_out)} held-out pairs; prompt + reply: mean {mean:.0f} tokens, "
        f"max {max(lengths)}; batch {args.batch_size}, {args.epochs} epoch(s), lr {args.learning_rate}",
        file=sys.stderr,
    )

    names = ["ours", "trl"] + (["trl-no-checkpointing"] if args.trl_no_checkpointing else [])
    labels = {
        "ours": "RewardLab `train_reward_model`",
        "trl": "TRL `RewardTrainer` (defaults)",
        "trl-no-checkpointing": "TRL `RewardTrainer`, no gradient checkpointing",
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="reward-bench-") as work:
        data = Path(work) / "train.json"
        data.write_text(json.dumps([vars(r) for r in train]))
        for name in names:
            output = Path(work) / name / "model"
            results[name] = launch(name, data, output, args)
            features_of = ours_features(args.max_length) if name == "ours" else trl_features(args.base_model)
            results[name]["accuracy"] = held_out_accuracy(output, features_of, held_out)

    print("| trainer | pairs | train pairs/s (end to end) | pairs/s (loop only) | peak RSS MiB | held-out accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        r = results[name]
        print(
            f"| {labels[name]} | {r['pairs']} | {r['pairs'] * args.epochs / r['seconds']:.2f} | "
            f"{r['pairs'] * args.epochs / r['loop_seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['accuracy']:.3f} |"
        )
    ours = results["ours"]
    for name in names[1:]:
        other = results[name]
        end_to_end = (ours["pairs"] / ours["seconds"]) / (other["pairs"] / other["seconds"])
        loop = (ours["pairs"] / ours["loop_seconds"]) / (other["pairs"] / other["loop_seconds"])
        print(
            f"\nours / {labels[name]}: {end_to_end:.2f}× pairs/s end to end, {loop:.2f}× in the loop, "
            f"accuracy {100 * (ours['accuracy'] - other['accuracy']):+.1f} points (n = {len(held_out)})"
        )


if __name__ == "__main__":
    main()
