"""The decode engine on a model worker: runners for one model each (runners.py), the row table and device state
of a worker call (rows.py, decode_step.py), and the engines that run a call for a colocated pair (pair.py) or
for each half of a split pair (split.py). Only token ids, row moves and sampling parameters come in; only
sampled tokens and requested logprobs go out."""
