"""Bit packing of integer codes (1..8 bits) into a little-endian bitstream of bytes.

Code ``i`` occupies bits ``[i*b, (i+1)*b)`` of the stream, least significant bit first, so 3-bit
codes pack 8 values into 3 bytes and any element count is allowed (the tail byte is zero-padded).
"""

from __future__ import annotations

import torch


def packed_nbytes(numel: int, bits: int) -> int:
    return (numel * bits + 7) // 8


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack integer codes in ``[0, 2**bits)`` (any shape) into a flat uint8 tensor.

    Eight codes make ``bits`` bytes: they are combined into one int64 (code i at bit offset i*bits),
    whose low ``bits`` bytes are written little-endian; the last group is zero-padded.
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    flat = codes.reshape(-1)
    numel = flat.numel()
    if numel and (int(flat.min()) < 0 or int(flat.max()) >= (1 << bits)):
        raise ValueError(f"codes out of range for {bits} bits")
    if bits == 8:
        return flat.to(torch.uint8).clone()
    pad = (-numel) % 8
    v = flat.to(torch.int64)
    if pad:
        v = torch.cat([v, v.new_zeros(pad)])
    v = v.reshape(-1, 8)
    shifts = torch.arange(8, dtype=torch.int64, device=v.device) * bits
    word = (v << shifts).sum(dim=1)  # < 2**(8*bits) <= 2**56
    byte_shifts = torch.arange(bits, dtype=torch.int64, device=v.device) * 8
    out = ((word.unsqueeze(1) >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)
    return out[: packed_nbytes(numel, bits)].clone()


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``numel`` codes as a flat uint8 tensor."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    need = packed_nbytes(numel, bits)
    if packed.numel() < need:
        raise ValueError(f"packed buffer holds {packed.numel()} bytes, {need} needed")
    data = packed.reshape(-1)[:need]
    if bits == 8:
        return data.clone()
    pad = (-need) % bits
    b = data.to(torch.int64)
    if pad:
        b = torch.cat([b, b.new_zeros(pad)])
    b = b.reshape(-1, bits)
    byte_shifts = torch.arange(bits, dtype=torch.int64, device=b.device) * 8
    word = (b << byte_shifts).sum(dim=1)
    shifts = torch.arange(8, dtype=torch.int64, device=b.device) * bits
    codes = ((word.unsqueeze(1) >> shifts) & ((1 << bits) - 1)).reshape(-1)
    return codes[:numel].to(torch.uint8)
