"""Graph propagation on user-item bipartite graphs (LightGCN and the MBLFE/CRGCN variant).

Nodes are the users (rows 0..U-1) then the items (rows U..U+I-1). The adjacency of a binary
user x item matrix R is A = [[0, R], [R^T, 0]], normalised symmetrically without self-loops:
A_hat = D^-1/2 A D^-1/2, with ``eps`` added to every degree so isolated nodes stay finite.

Two ways to combine layers (``variant``):

- ``standard`` (LightGCN, He et al. 2020; PyG's ``LightGCN``): E^(l+1) = A_hat E^(l) and the output
  is the mean of E^(0..L);
- ``official`` (the MBLFE and CRGCN release): after every layer the rows are L2-normalised,
  E^(l+1) = rownorm(A_hat E^(l)), and the output is the sum of E^(0..L).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import torch

Variant = Literal["official", "standard"]


def bipartite_adjacency(matrix: sp.spmatrix | sp.sparray, eps: float = 1e-7) -> torch.Tensor:
    """The (U+I) x (U+I) normalised adjacency of a binary U x I matrix, as a coalesced torch sparse
    COO tensor (sparse @ dense has a backward on every device)."""
    import torch

    r = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    r.data[:] = 1.0
    n_u, n_i = r.shape
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    a = sp.csr_matrix(a, shape=(n_u + n_i, n_u + n_i))
    deg = np.asarray(a.sum(axis=1)).ravel() + eps
    inv = 1.0 / np.sqrt(deg)
    a = sp.diags(inv) @ a @ sp.diags(inv)
    a = sp.coo_matrix(a, dtype=np.float32)
    order = np.lexsort((a.col, a.row))
    index = torch.from_numpy(np.stack([a.row[order], a.col[order]]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(a.data[order]), size=a.shape,
                                   is_coalesced=True, check_invariants=False)


def node_degrees(matrix: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Degrees of the U+I nodes of a binary U x I matrix (users first)."""
    r = sp.csr_matrix(matrix)
    return np.concatenate([r.getnnz(axis=1), r.getnnz(axis=0)]).astype(np.float32)


def propagate(adjacency: torch.Tensor, embeddings: torch.Tensor, layers: int, variant: Variant = "official") -> torch.Tensor:
    """Layer-combined node embeddings (see the module docstring for the two variants)."""
    import torch.nn.functional as F

    out = embeddings
    h = embeddings
    for _ in range(layers):
        h = adjacency @ h
        if variant == "official":
            h = F.normalize(h, p=2, dim=1)
        out = out + h
    return out if variant == "official" else out / (layers + 1)
