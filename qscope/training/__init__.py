"""SAE training: TopK (+AuxK) and BatchTopK→JumpReLU on CPU or GPU, from an activation cache or the LM itself.

from qscope.training import TrainConfig, Trainer, cache_activations
cache_activations("~/.cache/qscope/activations/l15", "corpus.parquet", layers=[15], max_tokens=2_000_000)
Trainer(TrainConfig(cache="~/.cache/qscope/activations/l15", layers=[15])).fit()
"""

from qscope.training.cache import ActivationCache, CacheSummary, cache_activations, write_activation_cache
from qscope.training.config import SAETrainConfig, TrainConfig, TrainConfigError
from qscope.training.sparse_sae import TrainableSAE, geometric_median
from qscope.training.trainer import StepMetrics, Trainer, TrainResult

__all__ = [
    "ActivationCache",
    "CacheSummary",
    "SAETrainConfig",
    "StepMetrics",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainableSAE",
    "Trainer",
    "cache_activations",
    "geometric_median",
    "write_activation_cache",
]
