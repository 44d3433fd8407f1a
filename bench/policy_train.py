"""Policy training throughput on the embedded tiny policy: PPO samples/s and peak memory, batched generation against
one prompt at a time, SFT and DPO examples/s.

The policy is the embedded default (`TinyPolicyConfig()`: a GPT-2 of 4 layers, 128 dims, a byte-level BPE
vocabulary of up to 2048), randomly initialised and built once, from the synthetic text below, into a temporary folder
that every measurement loads. Prompts are synthetic support questions of 8–120 words (log-uniform, so most are
short), rendered with the policy's chat template; SFT demonstrations and DPO pairs are replies to the same prompts.
Nothing here needs Django or a network.

- Generation: `policy.sample` (left-padded batches, KV cache) over the same prompts in the same order, in batches
  of each `--gen-batch-sizes` and one prompt at a time, greedy (`do_sample=False`, so both do the same work; the
  share of identical replies checks that left padding changes nothing). Tokens/s counts the reply tokens actually
  generated (`Samples.reply_tokens`, end-of-sequence included) over the time `sample` took (tokenisation included),
  after a warm-up pass; the batch sizes take turns chunk by chunk, so a change in the machine's load hits all alike.
- PPO: `train_ppo` with a toy reward, five times the share of the letter "e" in the reply (no reward model is
  trained here; `--reward-model` scores with a saved RewardLab reward model instead). Samples/s is the trainer's
  own (`metrics["samples_per_second"]`, from the first rollout to the last update; loading and saving excluded),
  split into generation, reward and the rest (the π_old, value and reference passes, and the PPO updates).
- SFT and DPO: `train_sft` and `train_dpo`, one epoch, nothing held out; examples/s is the trainer's own.

Each trainer runs in its own process, so its peak memory is its own: peak RSS on a CPU (`ru_maxrss`, which
includes the ~0.4 GiB that importing torch and transformers costs, shown apart), `torch.cuda.max_memory_allocated`
on a GPU. The generation batch sizes share one process; each one's peak is read after its warm-up batch, smallest
first. Nothing is asserted about timings.

    .venv/bin/python bench/policy_train.py            # a few minutes on a CPU
    .venv/bin/python bench/policy_train.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

# Nothing may be fetched from a hub: set before the Hugging Face libraries read their settings.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# --- synthetic chat data ----------------------------------------------------------------------------------------

from bench.reward_train import TOPICS, run_child  # the same support topics and child runner as the reward bench

QUESTIONS = [
    "How do I deal with the {a}?",
    "What should I do about my {a} and the {b}?",
    "Can you explain why the {a} keeps failing?",
    "Is it normal that the {a} affects the {b}?",
    "Any tips for the {a}?",
    "Why does nobody tell you about the {a} before it goes wrong with the {b}?",
]
FILLER = [
    "I have been trying to sort this out for a few days now.",
    "It worked fine last week and nothing changed on my side as far as I know.",
    "The {a} and the {b} are both involved, I think.",
    "I read a couple of forum threads about the {a} but they were quite old.",
    "Thanks in advance for any advice you can give me.",
    "Sorry if this is a basic question, I am new to the {b}.",
    "I would rather not spend money on the {a} if there is another way.",
    "It is not urgent, but I would like to understand what is going on.",
]
HELPFUL = [
    "Here is what I would do, step by step.",
    "First, check the {a} and make sure the {b} is set up correctly.",
    "The usual cause is the {a}, so start there before changing the {b}.",
    "If the {a} still looks wrong, try again with a fresh {b}.",
    "I hope this helps, and let me know if the {a} gives you any more trouble.",
]
RUDE = [
    "Just search for {a} yourself, it is not hard.",
    "Honestly the {b} is your own fault.",
    "I do not have time to explain the {a} to you.",
    "I cannot help with that.",
]


def _words(rng: random.Random, low: int, high: int) -> int:
    return round(math.exp(rng.uniform(math.log(low), math.log(high))))


def _text(rng: random.Random, target_words: int, templates: list[str], words: list[str], first: str = "") -> str:
    sentences = [first] if first else []
    while sum(len(s.split()) for s in sentences) < target_words:
        a, b = rng.sample(words, 2)
        pool = templates if not sentences or rng.random() < 0.6 else FILLER
        sentences.append(rng.choice(pool).format(a=a, b=b))
    return " ".join(sentences)


def synthetic_data(n: int, seed: int = 0) -> dict[str, list[dict]]:
    """`n` prompts of 8–120 words (log-uniform), each with a helpful demonstration and a (helpful, rude) pair of
    replies of 10–60 words, as plain JSON-ready dicts."""
    rng = random.Random(seed)
    prompts, demonstrations, pairs = [], [], []
    for i in range(n):
        words = TOPICS[rng.choice(sorted(TOPICS))]
        a, b = rng.sample(words, 2)
        question = f"{rng.choice(QUESTIONS).format(a=a, b=b)} (ticket {i})"
        text = _text(rng, _words(rng, 8, 120), FILLER, words, first=question)
        turns = [{"role": "user", "content": text}]
        prompts.append({"turns": turns, "reward_prompt": text})
        chosen = _text(rng, _words(rng, 10, 60), HELPFUL, words)
        demonstrations.append({"turns": turns, "reply": chosen})
        pairs.append({"turns": turns, "chosen": chosen, "rejected": _text(rng, _words(rng, 10, 60), RUDE, words)})
    return {"prompts": prompts, "demonstrations": demonstrations, "pairs": pairs}


def letter_share(_prompts: list[str], replies: list[str]) -> list[float]:
    """The toy reward: five times the share of the reply's characters that are the letter "e"."""
    return [5 * sum(c == "e" for c in reply) / max(1, len(reply)) for reply in replies]


# --- one measurement per process --------------------------------------------------------------------------------


def peak_memory(device) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "RSS"  # KiB on Linux


def run_generation(plan: dict, device) -> dict:
    """Replies to every prompt with each batch size (1: one prompt per `policy.sample` call), interleaved so that
    a change in the machine's load hits every batch size alike: the prompts are cut into chunks of the largest
    batch size, and each chunk is generated with every batch size in turn (the order rotating from one chunk to
    the next). Before that, one untimed batch of each size, smallest first, warms up and gives each its peak memory
    (RSS only grows, and the allocator reuses what smaller batches freed)."""
    import torch

    from ml import policy
    from ml.common import autocast, pick_dtype, seed_everything

    tokenizer, model = policy.load_policy(plan["base"], trainable=False)
    model.to(device).eval()
    dtype = pick_dtype(device)
    prompts = [policy.format_prompt(tokenizer, p["turns"]) for p in plan["data"]["prompts"]]
    options = {"max_new_tokens": plan["max_new_tokens"], "max_prompt_length": plan["max_prompt_length"]}
    options["do_sample"] = plan["do_sample"]
    sizes = plan["gen_batch_sizes"]
    chunk = max(sizes)

    def generate(batch: list[str], size: int) -> list:
        out = []
        for start in range(0, len(batch), size):
            with autocast(device, dtype):
                out.append(policy.sample(model, tokenizer, batch[start : start + size], **options))
        return out

    runs = {}
    for size in sizes:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        generate(prompts[:size], size)
        runs[size] = {"tokens": 0, "seconds": 0.0, "texts": [], "computed": 0, "real": 0}
        runs[size]["peak_mib"] = peak_memory(device)[0]
    for index, first in enumerate(range(0, len(prompts), chunk)):
        for size in sizes[index % len(sizes) :] + sizes[: index % len(sizes)]:
            seed_everything(plan["seed"] + index)  # sampled replies: the same seed for every batch size
            run = runs[size]
            for samples in generate(prompts[first : first + chunk], size):
                run["texts"] += samples.texts
                run["tokens"] += samples.reply_tokens
                run["seconds"] += samples.seconds
                rows, width = samples.sequences.shape
                run["computed"] += rows * (width - 1)  # positions fed to the model: the last token never is
                run["real"] += int(samples.attention_mask.sum()) - rows
    for run in runs.values():
        run["padding"] = run.pop("computed") / run.pop("real")
    return {"runs": {str(size): run for size, run in runs.items()}}


def run_trainer(name: str, plan: dict, output: Path, device) -> dict:
    from ml.config import (
        ChatPairRecord,
        ChatRecord,
        DPOConfig,
        PPOConfig,
        PromptRecord,
        SFTConfig,
    )

    data, base, seed, batch = plan["data"], plan["base"], plan["seed"], plan["batch_size"]
    common = {"base_model": base, "seed": seed, "device": str(device)}
    started = time.perf_counter()
    if name.startswith("ppo"):
        from ml.ppo import train_ppo

        reward_fn = letter_share
        if plan["reward_model"]:
            from ml.reward import RewardScorer

            reward_fn = RewardScorer.load(plan["reward_model"], device=str(device)).score
        config = PPOConfig(
            **common, steps=plan["steps"], batch_size=batch, mini_batch_size=min(8, batch),
            max_new_tokens=plan["max_new_tokens"], max_prompt_length=plan["max_prompt_length"],
            lora_r=plan["lora_r"] if name == "ppo-lora" else 0,
        )  # fmt: skip
        prompts = [PromptRecord(**p) for p in data["prompts"]]
        result = train_ppo(prompts, reward_fn, config, output)
        m = result.metrics
        reply_tokens = sum(row["reply_length"] for row in result.history) * batch
        out = {
            "examples": m["samples"], "steps": m["steps"], "loop_seconds": m["train_seconds"],
            "per_second": m["samples_per_second"], "generate_seconds": m["generate_seconds"],
            "reward_seconds": m["reward_seconds"], "reply_tokens": reply_tokens,
            "reward_first": m["reward_mean_first"], "reward_last": m["reward_mean_last"], "kl_last": m["kl_last"],
        }  # fmt: skip
    elif name == "sft":
        from ml.sft import train_sft

        config = SFTConfig(**common, batch_size=batch, epochs=1, eval_share=0.0)
        result = train_sft([ChatRecord(**r) for r in data["demonstrations"]], config, output)
        m = result.metrics
        out = {"examples": m["train_examples"], "steps": m["steps"], "loop_seconds": m["train_seconds"]}
        out["per_second"] = m["train_examples_per_second"]
    else:
        from ml.dpo import train_dpo

        config = DPOConfig(**common, batch_size=batch, epochs=1, eval_share=0.0)
        result = train_dpo([ChatPairRecord(**r) for r in data["pairs"]], config, output)
        m = result.metrics
        out = {"examples": m["train_pairs"], "steps": m["steps"], "loop_seconds": m["train_seconds"]}
        out["per_second"] = m["train_pairs_per_second"]
    out["wall_seconds"] = time.perf_counter() - started  # loading and saving included
    return out


def child(args: argparse.Namespace) -> None:
    import torch
    import transformers  # noqa: F401 - imported before the baseline memory is read, as the trainers need it

    from ml.common import pick_device

    plan = json.loads(Path(args.plan).read_text())
    device = pick_device(plan["device"])
    imports_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.child == "generate":
        result = run_generation(plan, device)
    else:
        result = run_trainer(args.child, plan, Path(args.output), device)
    result["peak_mib"], result["memory_kind"] = peak_memory(device)
    result["imports_mib"] = imports_mib if device.type == "cpu" else 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)


# --- driver -----------------------------------------------------------------------------------------------------


def launch(name: str, work: Path) -> dict:
    command = [sys.executable, __file__, "--child", name, "--plan", str(work / "plan.json")]
    command += ["--output", str(work / name)]
    started = time.perf_counter()
    result = run_child(command, name, name)
    print(f"  {name}: {time.perf_counter() - started:.1f} s wall", file=sys.stderr, flush=True)
    return result


def machine(device_name: str) -> str:
    import torch
    import transformers

    from ml.common import pick_device

    device = pick_device(device_name)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"{device}"
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}; device: {where}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, cuda:1, …")
    parser.add_argument("--prompts", type=int, default=128, help="synthetic prompts (and SFT records, DPO pairs)")
    parser.add_argument("--steps", type=int, default=20, help="PPO steps")
    parser.add_argument("--batch-size", type=int, default=16, help="PPO replies per step; SFT and DPO batch")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reply budget, PPO and generation")
    parser.add_argument("--max-prompt-length", type=int, default=256)
    parser.add_argument(
        "--gen-batch-sizes", default="4,16,64", help="comma-separated batch sizes compared with one at a time"
    )
    parser.add_argument("--do-sample", action="store_true", help="sample replies in the generation bench (seeded)")
    parser.add_argument("--lora-r", type=int, default=0, help="also run PPO with LoRA adapters of this rank")
    parser.add_argument("--reward-model", default="", help="a saved RewardLab reward model for PPO (default: toy)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: generate, ppo, sft, dpo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smaller defaults: 32 prompts, 3 PPO steps, 24 new tokens, batch 16 only"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    if "--quick" in sys.argv[1:]:  # smaller defaults; options given explicitly still win
        parser.set_defaults(prompts=32, steps=3, max_new_tokens=24, gen_batch_sizes="16")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from ml import policy
    from ml.common import quiet_transformers
    from ml.config import ChatRecord
    from ml.policy import corpus

    print(machine(args.device))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    gen_sizes = sorted({min(int(s), args.prompts) for s in args.gen_batch_sizes.split(",") if s.strip()} - {1})
    data = synthetic_data(args.prompts, args.seed)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="policy-bench-") as tmp:
        work = Path(tmp)
        # The embedded policy is built from the project's text as `resolve_policy_path` builds it: here, once, from
        # every text of the run (prompts, demonstrations, both replies of each pair), so all runs load one model.
        records = [ChatRecord(**r) for r in data["demonstrations"]]
        texts = corpus(records) + [p["rejected"] + policy.END for p in data["pairs"]]
        with quiet_transformers():  # its save would show a progress bar
            base = policy.build_tiny_policy(texts, work / "base", policy.TinyPolicyConfig())
        tokenizer, model = policy.load_policy(str(base), trainable=False)
        lengths = sorted(
            len(tokenizer(policy.format_prompt(tokenizer, p["turns"]), add_special_tokens=False)["input_ids"])
            for p in data["prompts"]
        )
        n_params = sum(p.numel() for p in model.parameters())
        del model
        print(
            f"policy: embedded tiny GPT-2, {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}; "
            f"{args.prompts} prompts of {lengths[0]}–{lengths[-1]} tokens (median {lengths[len(lengths) // 2]}), "
            f"max {args.max_new_tokens} new tokens, batch {args.batch_size}"
        )
        plan = {
            "base": str(base), "data": data, "device": args.device, "seed": args.seed, "steps": args.steps,
            "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "lora_r": args.lora_r,
            "max_prompt_length": args.max_prompt_length, "do_sample": args.do_sample, "reward_model": args.reward_model,
            "gen_batch_sizes": [1, *gen_sizes],
        }  # fmt: skip
        (work / "plan.json").write_text(json.dumps(plan))
        names = []
        if "generate" not in skip:
            names.append("generate")
        if "ppo" not in skip:
            names += ["ppo"] + (["ppo-lora"] if args.lora_r > 0 else [])
        names += [name for name in ("sft", "dpo") if name not in skip]
        for name in names:
            results[name] = launch(name, work)

    if "generate" in results:
        runs = results["generate"]["runs"]
        one = runs["1"]
        mode = "sampled, seeded" if args.do_sample else "greedy"
        print(f"\nGeneration ({mode}, `policy.sample`): {args.prompts} prompts, max {args.max_new_tokens} new tokens")
        print(
            "| batch | reply tokens | batched tokens/s | one at a time tokens/s | speedup | "
            "positions computed / real | identical replies | peak memory MiB |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in [1, *gen_sizes]:
            r = runs[str(n)] | {"memory_kind": results["generate"]["memory_kind"]}
            r["imports_mib"] = results["generate"]["imports_mib"]
            same = sum(a == b for a, b in zip(r["texts"], one["texts"], strict=True)) / len(one["texts"])
            same = "—" if args.do_sample else f"{same:.0%}"  # sampled replies differ by design
            speed, base_speed = r["tokens"] / r["seconds"], one["tokens"] / one["seconds"]
            print(
                f"| {n} | {r['tokens']:,.0f} | {speed:,.0f} | {base_speed:,.0f} | {speed / base_speed:.2f}× | "
                f"{r['padding']:.2f} | {same} | {memory(r)} |"
            )

    trainers = [name for name in ("ppo", "ppo-lora", "sft", "dpo") if name in results]
    if trainers:
        reward = f"reward model {args.reward_model}" if args.reward_model else 'toy reward: 5 × share of "e"'
        print(f"\nTraining (PPO: {args.steps} steps of {args.batch_size}, {reward}; SFT, DPO: one epoch)")
        print(
            "| trainer | examples | steps | examples/s | loop s | generate / reward / rest s | "
            "PPO rollout tokens/s | peak memory MiB |"
        )
        print("|---|---:|---:|---:|---:|---|---:|---:|")
        labels = {
            "ppo": "PPO `train_ppo` (samples)",
            "ppo-lora": f"PPO `train_ppo`, LoRA r={args.lora_r} (samples)",
            "sft": "SFT `train_sft` (demonstrations)",
            "dpo": "DPO `train_dpo` (pairs)",
        }
        for name in trainers:
            r = results[name]
            split = rollout = "—"
            if name.startswith("ppo"):
                update = r["loop_seconds"] - r["generate_seconds"] - r["reward_seconds"]
                split = f"{r['generate_seconds']:.1f} / {r['reward_seconds']:.2f} / {update:.1f}"
                rollout = f"{r['reply_tokens'] / r['generate_seconds']:,.0f}"
            print(
                f"| {labels[name]} | {r['examples']} | {r['steps']} | {r['per_second']:.1f} | "
                f"{r['loop_seconds']:.1f} | {split} | {rollout} | {memory(r)} |"
            )
        for name in trainers:
            if name.startswith("ppo"):
                r = results[name]
                print(
                    f"\n{labels[name]}: mean reward {r['reward_first']:.3f} over the first tenth of the steps, "
                    f"{r['reward_last']:.3f} over the last; KL {r['kl_last']:.3f} (a throughput run, not a quality one)"
                )
    first = next(iter(results.values()), None)
    if first and first["memory_kind"] == "RSS":
        print(
            "\nPeak memory is each process's peak RSS (the generation batch sizes share one process: read after "
            "each one's warm-up, smallest first); in brackets, what it already was after importing torch and "
            "transformers."
        )
    elif first:
        print("\nPeak memory is each process's `torch.cuda.max_memory_allocated` (reset before each batch size).")
    if results:
        loads = [x for r in results.values() for x in r["load"]]
        print(
            f"Load average (1 min) before and after each measurement: {min(loads):.2f}–{max(loads):.2f} on "
            f"{os.cpu_count()} CPUs (the run itself adds up to the thread count; more: something else competed)."
        )


def memory(result: dict) -> str:
    if result["memory_kind"] == "RSS":
        return f"{result['peak_mib']:,.0f} ({result['imports_mib']:,.0f})"
    return f"{result['peak_mib']:,.0f}"


if __name__ == "__main__":
    main()
