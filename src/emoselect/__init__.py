"""emoselect: find, test and manipulate emotion-selective units in convolutional networks.

The stages, each usable on its own (see DESIGN.md for the data flow)::

    stimuli      build_stimuli(...)          picture sets -> one table with category and split
    network      load_network(...)           torchvision CNN with named probe sites
    responses    extract(...)                per-picture spatial-mean responses, cached by content
    pipeline     extract_stage(options, run) all of the above into a run folder
"""
__version__ = "0.1.0"

from .config import ExtractOptions  # noqa: E402
from .network import Network, load_network  # noqa: E402
from .pipeline import extract_stage, inspect_dataset  # noqa: E402
from .problems import InputError, Problem  # noqa: E402
from .responses import Responses, extract, load_responses  # noqa: E402
from .stimuli import CATEGORIES, Stimuli, build_stimuli, categorize, read_stimuli  # noqa: E402

__all__ = ["CATEGORIES", "ExtractOptions", "InputError", "Network", "Problem", "Responses", "Stimuli",
           "build_stimuli", "categorize", "extract", "extract_stage", "inspect_dataset", "load_network",
           "load_responses", "read_stimuli"]
