"""emoselect: find, test and manipulate emotion-selective units in convolutional networks.

The stages, each usable on its own (docs/science.md gives every definition)::

    stimuli       build_stimuli(...)              picture sets -> one table with category and split
    network       load_network(...)               torchvision CNN with named probe sites
    responses     extract(...)                    per-picture spatial-mean responses, cached by content
    selectivity   analyse(...)                    tuning, selective units, overlap vs chance
    readout       train_heads(...)                2-unit heads on the readout features
    manipulation  evaluate(...)                   head margins under per-channel gains (suffix engine)
    report        write_report(run)               one HTML page from a run folder

    claims        scorecard(...)                  the paper's claims: test, effect, p, verdict

and the same on a run folder: extract_stage, selectivity_stage, manipulate_stage (manipulate_all:
with the first random-init control), claims_stage, run_all.
"""

__version__ = "0.1.0"

# public name -> the module that defines it; imported on first use, so that `import emoselect`
# loads neither torch nor matplotlib and changes nothing (PEP 562)
_HOMES = {
    "CATEGORIES": "stimuli",
    "Stimuli": "stimuli",
    "build_stimuli": "stimuli",
    "categorize": "stimuli",
    "read_stimuli": "stimuli",
    "ExtractOptions": "config",
    "ManipulationOptions": "experiments",
    "SelectivityOptions": "selectivity",
    "ReadoutOptions": "records",
    "Responses": "records",
    "InputError": "problems",
    "Problem": "problems",
    "analyse": "selectivity",
    "scorecard": "claims",
    "Network": "network",
    "load_network": "network",
    "probe_model": "network",
    "extract": "responses",
    "load_responses": "responses",
    "train_heads": "readout",
    "evaluate": "manipulation",
    "evaluate_naive": "manipulation",
    "write_report": "report",
    "extract_stage": "pipeline",
    "selectivity_stage": "pipeline",
    "manipulate_stage": "pipeline",
    "manipulate_all": "pipeline",
    "claims_stage": "pipeline",
    "run_all": "pipeline",
    "inspect_dataset": "pipeline",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'emoselect' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
