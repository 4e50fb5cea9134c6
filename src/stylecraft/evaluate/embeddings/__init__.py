"""Embedding networks for FAD, KAD and the audit, their front ends and the registry by name.

* :mod:`~stylecraft.evaluate.embeddings.base`: the :class:`Embedding` and
  :class:`BatchedEmbedding` protocols and the shared input checks;
* :mod:`~stylecraft.evaluate.embeddings.registry`: :func:`get_embedding` by name;
* one module per family: :mod:`~stylecraft.evaluate.embeddings.mfcc`,
  :mod:`~stylecraft.evaluate.embeddings.vggish`, :mod:`~stylecraft.evaluate.embeddings.encodec`,
  :mod:`~stylecraft.evaluate.embeddings.clap`, :mod:`~stylecraft.evaluate.embeddings.musicnn`;
* CPU kernels and resampling they share: :mod:`~stylecraft.evaluate.embeddings.cpu_conv`,
  :mod:`~stylecraft.evaluate.embeddings.resample`.

The learned families are imported only when :func:`get_embedding` builds one, so importing this
package stays light.
"""

from stylecraft.evaluate.embeddings.base import BatchedEmbedding, Embedding
from stylecraft.evaluate.embeddings.mfcc import MfccEmbedding
from stylecraft.evaluate.embeddings.registry import available_embeddings, get_embedding, register_embedding

__all__ = [
    "BatchedEmbedding",
    "Embedding",
    "MfccEmbedding",
    "available_embeddings",
    "get_embedding",
    "register_embedding",
]
