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

from typing import Any

from .base.version import __version__ as __version__

# public name -> the module that defines it; imported on first use, so that `import emoselect`
# loads neither torch nor matplotlib and changes nothing (PEP 562)
_HOMES = {
    "CATEGORIES": "pictures.stimuli",
    "Stimuli": "pictures.stimuli",
    "build_stimuli": "pictures.stimuli",
    "categorize": "pictures.stimuli",
    "read_stimuli": "pictures.stimuli",
    "ExtractOptions": "run.config",
    "ManipulationOptions": "analysis.experiments",
    "SelectivityOptions": "analysis.selectivity",
    "ReadoutOptions": "analysis.records",
    "Responses": "analysis.records",
    "InputError": "base.problems",
    "Problem": "base.problems",
    "analyse": "analysis.selectivity",
    "scorecard": "analysis.claims",
    "Network": "engine.network",
    "load_network": "engine.probe",
    "probe_model": "engine.probe",
    "extract": "engine.responses",
    "load_responses": "engine.responses",
    "train_heads": "engine.readout",
    "evaluate": "engine.manipulation",
    "evaluate_naive": "engine.manipulation",
    "write_report": "output.report",
    "extract_stage": "stages.extract",
    "selectivity_stage": "stages.selectivity",
    "manipulate_stage": "stages.manipulate",
    "manipulate_all": "stages.manipulate",
    "claims_stage": "stages.claims",
    "run_all": "stages.run",
    "inspect_dataset": "stages.extract",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:  # any public object: a class, a function or a constant
    if name not in _HOMES:
        raise AttributeError(f"module 'emoselect' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
