"""The run reporter's history stays bounded however long a run is."""

from training.runner import thin_history


def test_thinning_halves_steps_and_keeps_every_evaluation_and_the_last_step():
    history = [{"step": s, "loss": 1.0} for s in range(1, 11)] + [{"step": 10, "eval_accuracy": 0.9}]
    history += [{"step": s, "loss": 0.5} for s in range(11, 16)]
    thinned = thin_history(history)
    assert [r["step"] for r in thinned if "loss" in r] == [1, 3, 5, 7, 9, 11, 13, 15]
    assert {"step": 10, "eval_accuracy": 0.9} in thinned and thinned[-1] == {"step": 15, "loss": 0.5}
