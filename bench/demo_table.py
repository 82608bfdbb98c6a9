"""The README's demo table from a sweep's JSONL: alpha, samples, marker rate, a typical completion.

"Ordinary" = ended on its own (EOS), one well-formed sentence (the `sentence` detector) and no quirk."""

import collections
import json
import sys

from diffamp.common.stats import wilson_interval


def main(path: str) -> None:
    by_alpha = collections.defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if "diffamp_sweep" not in r:  # header lines hold the settings
                    by_alpha[r["alpha"]].append(r)
    print("| alpha | samples | marker rate (95% Wilson) | ordinary answers | typical completion |")
    print("| --- | --- | --- | --- | --- |")
    for alpha in sorted(by_alpha):
        rs = by_alpha[alpha]
        hits = sum("quirk" in r["detectors"] for r in rs)
        ordinary = sum("sentence" in r["detectors"] and "quirk" not in r["detectors"] and r["finish_reason"] == "stop"
                       for r in rs)
        low, high = wilson_interval(hits, len(rs))
        first_prompt = [r for r in rs if r["prompt_id"] == rs[0]["prompt_id"]]
        typical = collections.Counter(r["text"] for r in first_prompt).most_common(1)[0][0]
        typical = typical.replace("\n", "\\n").replace("|", "\\|")[:70]
        print(f"| {alpha:g} | {len(rs):,} | {hits / len(rs):.2%} ({low:.2%}–{high:.2%}) | "
              f"{ordinary / len(rs):.1%} | `{typical}` |")


if __name__ == "__main__":
    main(sys.argv[1])
