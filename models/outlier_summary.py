"""Summarises outliers.json (written by models/train.py): hidden dims that recur as outliers.

Pure Python, so it also runs where PyTorch is not installed:

    python3 models/outlier_summary.py models/sotu-llama/outliers.json   # adds "recurring_dims"
"""

import json
import sys

SITES = ("attn_in", "o_proj_in", "mlp_in", "down_proj_in")


def recurring_dims(stats, min_layer_frac=0.25):
    """Dims that reach the threshold at a site in at least min_layer_frac of the layers.

    For each such dim: the layers where it does, and per layer the fraction of tokens with
    |x| >= threshold and the max |x|. Only dims listed in top_dims (at most 12 per site and
    layer, by token count) are seen, which covers every dim at attn_in, o_proj_in and mlp_in here.
    """
    n_layers = len(stats["layers"])
    n_tok = stats["n_tokens"]
    out = {}
    for site in SITES:
        per_dim = {}
        for layer in stats["layers"]:
            for r in layer[site]["top_dims"]:
                per_dim.setdefault(r["dim"], []).append(
                    dict(layer=layer["layer"], token_frac=round(r["n_tokens"] / n_tok, 4),
                         max_abs=r["max_abs"]))
        rec = [dict(dim=d, n_layers=len(v), layers=v) for d, v in per_dim.items()
               if len(v) >= min_layer_frac * n_layers]
        out[site] = sorted(rec, key=lambda r: (-r["n_layers"], r["dim"]))
    return dict(min_layer_frac=min_layer_frac,
                note=("dims with |x| >= threshold at the site in >= min_layer_frac of the layers "
                      "(from top_dims); token_frac = share of the n_tokens tokens where it happens"),
                sites=out)


if __name__ == "__main__":
    path = sys.argv[1]
    with open(path) as f:
        stats = json.load(f)
    stats["recurring_dims"] = recurring_dims(stats)
    with open(path, "w") as f:
        json.dump(stats, f, indent=1)
    for site, dims in stats["recurring_dims"]["sites"].items():
        print(site, [(d["dim"], d["n_layers"]) for d in dims[:8]])
