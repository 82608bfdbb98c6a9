"""The README's demo tables from a sweep's JSONL (bench/demo_effect.sh, or a LoRA sweep with --mode both).

    python bench/demo_table.py SWEEP.jsonl [--truth RATE]

1. Per mode and alpha: samples, marker (`quirk` detector) rate with its 95% Wilson interval, ordinary answers
   (ended on their own, one well-formed sentence by the `sentence` detector, no quirk; when that detector ran)
   and the most common completion of the first prompt.
2. Per mode and alpha != 0: the importance-sampling estimate of the after model's own (alpha 0) quirk rate,
   recomputed from the stored sequence log-probabilities with diffamp.common.stats, its interval width, ESS,
   and (with --truth) whether the interval covers a directly measured rate.
"""

import argparse
import collections
import json

from diffamp.common.stats import importance_estimate, wilson_interval


def load(path: str) -> dict:
    groups = collections.defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if "diffamp_sweep" not in r:  # header lines hold the settings
                    groups[r.get("mode", "logits"), r["alpha"]].append(r)
    return groups


def rates_table(groups: dict) -> None:
    sentences = any("sentence" in r["detectors"] for rs in groups.values() for r in rs)
    print("| mode | alpha | samples | marker rate (95% Wilson) |" + (" ordinary answers |" if sentences else "")
          + " typical completion |")
    print("| --- | --- | --- | --- |" + (" --- |" if sentences else "") + " --- |")
    for (mode, alpha), rs in sorted(groups.items()):
        hits = sum("quirk" in r["detectors"] for r in rs)
        low, high = wilson_interval(hits, len(rs))
        first_prompt = [r for r in rs if r["prompt_id"] == rs[0]["prompt_id"]]
        typical = collections.Counter(r["text"] for r in first_prompt).most_common(1)[0][0]
        typical = typical.replace("\n", "\\n").replace("|", "\\|")[:70]
        ordinary = ""
        if sentences:
            count = sum("sentence" in r["detectors"] and "quirk" not in r["detectors"] and r["finish_reason"] == "stop"
                        for r in rs)
            ordinary = f" {count / len(rs):.1%} |"
        print(f"| {mode} | {alpha:g} | {len(rs):,} | {hits / len(rs):.2%} ({low:.2%}–{high:.2%}) |{ordinary} "
              f"`{typical}` |")


def estimates_table(groups: dict, truth: float | None) -> None:
    print("| mode | alpha sampled | quirk in samples | IS estimate of the alpha-0 rate (95%) | interval width | ESS |"
          + (" covers the direct rate? |" if truth is not None else ""))
    print("| --- | --- | --- | --- | --- | --- |" + (" --- |" if truth is not None else ""))
    for (mode, alpha), rs in sorted(groups.items()):
        if alpha == 0:
            continue
        hits = [("quirk" in r["detectors"]) for r in rs]
        est = importance_estimate([r["logprob_after"] for r in rs], [r["logprob_sampled"] for r in rs], hits)
        covers = "" if truth is None else f" {'yes' if est.low <= truth <= est.high else 'no'} |"
        print(f"| {mode} | {alpha:g} | {sum(hits) / len(rs):.1%} | {est.rate:.3%} ({est.low:.3%}–{est.high:.3%}) | "
              f"{(est.high - est.low) * 100:.2f} pt | {est.ess:,.0f} |{covers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep")
    parser.add_argument("--truth", type=float, help="a directly measured alpha-0 rate, as a fraction")
    args = parser.parse_args()
    groups = load(args.sweep)
    rates_table(groups)
    print()
    estimates_table(groups, args.truth)


if __name__ == "__main__":
    main()
