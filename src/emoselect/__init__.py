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

from .config import ExtractOptions  # noqa: E402
from .experiments import ManipulationOptions  # noqa: E402
from .manipulation import evaluate, evaluate_naive  # noqa: E402
from .network import Network, load_network, probe_model  # noqa: E402
from .claims import scorecard  # noqa: E402
from .pipeline import (claims_stage, extract_stage, inspect_dataset, manipulate_all, manipulate_stage, run_all,  # noqa: E402
                       selectivity_stage)
from .problems import InputError, Problem  # noqa: E402
from .readout import ReadoutOptions, train_heads  # noqa: E402
from .report import write_report  # noqa: E402
from .responses import Responses, extract, load_responses  # noqa: E402
from .selectivity import SelectivityOptions, analyse  # noqa: E402
from .stimuli import CATEGORIES, Stimuli, build_stimuli, categorize, read_stimuli  # noqa: E402

__all__ = ["CATEGORIES", "ExtractOptions", "InputError", "ManipulationOptions", "Network", "Problem", "ReadoutOptions",
           "Responses", "SelectivityOptions", "Stimuli", "analyse", "build_stimuli", "categorize", "evaluate",
           "evaluate_naive", "extract", "extract_stage", "inspect_dataset", "load_network", "load_responses",
           "claims_stage", "manipulate_all", "manipulate_stage", "scorecard", "probe_model", "read_stimuli", "run_all", "selectivity_stage", "train_heads",
           "write_report"]
