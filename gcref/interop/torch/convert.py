"""``from_torch`` and ``to_torch`` (documented in :mod:`gcref.interop.torch`)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ..._validation import check_int
from ...nn import layers as L
from ...nn.base import prod
from ...nn.network import Network
from ._common import UnsupportedModuleError
from .leaves import AfterHead, SizeCheck
from .modules import TorchNetwork, leaves, module_of
from .structure import flatten_module

__all__ = ["from_torch", "to_torch"]

_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
#: layers that are the identity in evaluation mode (allowed after the head)
_IDENTITY_LAYERS = (L.Dropout,)
#: layers that keep their input's values (kept in the embedding before the head)
_VALUE_PRESERVING = _IDENTITY_LAYERS + (L.Flatten,)


def _input_shape(input_shape):
    if isinstance(input_shape, (int, np.integer)) or not hasattr(input_shape, "__iter__"):
        raise TypeError(f"input_shape must be a tuple of positive ints (one example, no batch "
                        f"axis), got {input_shape!r}")
    return tuple(check_int(s, "input_shape entry", minimum=1) for s in input_shape)


def _check_sizes(chain, input_shape):
    """The chain without its :class:`SizeCheck` markers, each checked against the flattened size
    at its place (a ``view(-1, n)`` with another size is not the flatten gcref reads)."""
    out, shape = [], input_shape
    for name, layer in chain:
        if isinstance(layer, SizeCheck):
            if prod(shape) != layer.size:
                raise UnsupportedModuleError(
                    f"{layer.where}: a view to (batch, {layer.size}) where each example has "
                    f"{prod(shape)} values changes the batch; gcref reads a "
                    f"flatten to (batch, -1)")
            continue
        if not isinstance(layer, AfterHead):
            try:
                shape = tuple(layer.out_shape(shape))
            except ValueError as err:
                raise ValueError(f"input_shape={input_shape} does not fit module: layer '{name}': "
                                 f"{err}") from None
        out.append((name, layer))
    return out


def _after_head(chain, head_at, embedding=None):
    """Refuse unless everything after the head is the identity (evaluation-mode dropout) or a
    softmax: so the gcref logits are the module's (up to that softmax)."""
    rest = [(n, layer) for n, layer in chain[head_at + 1:]
            if type(layer) not in _IDENTITY_LAYERS and not isinstance(layer, AfterHead)]
    if not rest:
        return
    names = ", ".join(f"'{n}' ({layer.describe()})" for n, layer in rest)
    if embedding is None:
        raise ValueError(f"module: {names} {'comes' if len(rest) == 1 else 'come'} after the last "
                         f"Linear '{chain[head_at][0]}'; a gcref network ends in its linear head "
                         f"(pass embedding= to end the network earlier)")
    raise ValueError(f"embedding='{embedding}': its head would be '{chain[head_at][0]}', and "
                     f"{names} after it would be left out, so the network's logits would differ "
                     f"from the module's; a gcref network ends in one linear head: pass the module "
                     f"before the last Linear as the embedding (or none)")


def _split_head(chain, embedding):
    """``(embedding layers, (head name, head))`` from the flattened chain."""
    early = [(i, n, layer) for i, (n, layer) in enumerate(chain) if isinstance(layer, AfterHead)]
    if embedding is None:
        linear_at = [i for i, (_, layer) in enumerate(chain) if type(layer) is L.Linear]
        if not linear_at:
            raise ValueError("module has no nn.Linear: a gcref network is an embedding followed by "
                             "a linear head (the last Linear)")
        head_at = linear_at[-1]
        _after_head(chain, head_at)
    else:
        if not isinstance(embedding, str):
            raise TypeError(f"embedding must be a module path (str) or None, got {embedding!r}")
        inside = [i for i, (n, _) in enumerate(chain)
                  if n == embedding or n.startswith(embedding + ".")]
        if not inside:
            owner = [n for n, _ in chain if embedding.startswith(n + ".")]
            if owner:
                raise ValueError(f"embedding='{embedding}' is inside the block '{owner[0]}': the "
                                 f"embedding must be the output of a module of the chain")
            raise ValueError(f"embedding='{embedding}' names no module of the chain; modules: "
                             f"{', '.join(n for n, _ in chain)}")
        head_at = inside[-1] + 1
        while head_at < len(chain) and type(chain[head_at][1]) in _VALUE_PRESERVING:
            head_at += 1
        if head_at >= len(chain) or type(chain[head_at][1]) is not L.Linear:
            nxt = chain[head_at][0] if head_at < len(chain) else "nothing"
            raise ValueError(f"embedding='{embedding}': the module after it is {nxt}, not a "
                             f"Linear; a gcref network is an embedding followed by a linear head")
        _after_head(chain, head_at, embedding)
    for i, _, marker in early:
        if i < head_at:
            raise UnsupportedModuleError(f"{marker.where}: {marker.describe()} before the head "
                                         f"'{chain[head_at][0]}' is not supported (a softmax is "
                                         f"accepted after the head only)")
    emb = chain[:head_at]
    if not emb:
        # the module is one Linear: the embedding is the input itself (a Linear takes vectors and
        # the shapes were checked, so the input is a vector and Flatten is the identity)
        names = {n for n, _ in chain}
        name = next(n for n in ("input", "input_", "input__") if n not in names)
        emb = [(name, L.Flatten())]             # the identity on vectors
    return emb, chain[head_at]


def _state_key(key, state, components):
    """The ``state_dict`` key of a gcref parameter key: itself, or without the components that
    name no module (a residual connection named by its graph node, :mod:`.trace`)."""
    if key in state:
        return key
    *path, local = key.split(".")
    return ".".join([c for c in path if c in components] + [local])


def _params_from(module, net: Network) -> dict[str, np.ndarray]:
    state = module.state_dict()
    components = {c for name, _ in module.named_modules() if name for c in name.split(".")}
    wanted = {**net.param_specs(), **net.buffer_specs()}
    params = {}
    for key in wanted:
        t = state[_state_key(key, state, components)]
        if not t.is_floating_point():
            raise TypeError(f"module: parameter '{key}' has dtype {t.dtype}; gcref needs real "
                            f"floating-point parameters")
        params[key] = t.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
    return net.check_params(params, "module's state_dict")


def from_torch(module, input_shape, embedding: str | None = None) -> tuple[Network, dict]:
    """Convert a ``torch.nn.Module`` into a gcref :class:`~gcref.nn.Network` and float64 params.

    Parameters
    ----------
    module : torch.nn.Module
        ``nn.Sequential`` chains, torchvision-structured VGG and ResNet, and modules of your own
        through their traced ``forward`` (see :mod:`gcref.interop.torch`). Its evaluation-mode
        function is converted; a module in training mode gives a ``UserWarning`` (it is not
        changed).
    input_shape : tuple of int
        The shape of one example, without the batch axis, e.g. ``(3, 32, 32)``.
    embedding : str, optional
        The path of the module whose output is the embedding (default: the input of the last
        ``Linear`` is the embedding and that ``Linear`` is the head). Only modules that leave
        the logits unchanged may follow the head (dropout, a softmax): otherwise it is refused.

    Returns
    -------
    (Network, dict)
        The network (layers named by their module paths, functional calls by their graph nodes)
        and its parameters: ``state_dict()`` in float64 (``num_batches_tracked`` left out).

    >>> net, params = from_torch(model, (3, 32, 32))      # doctest: +SKIP
    >>> net.embed(params, X)                              # doctest: +SKIP
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    shape = _input_shape(input_shape)
    # Training mode changes the function wherever batch norm or dropout sits, and wherever a
    # forward reads self.training (F.dropout(x, p, self.training)), which no module type shows:
    # so any module in training mode warns, naming the mode-dependent modules where there are.
    training = [n or "module" for n, m in module.named_modules()
                if m.training and isinstance(m, _MODE_DEPENDENT)]
    if any(m.training for m in module.modules()):
        where = (f" ({training[0]}{' and others' if len(training) > 1 else ''})" if training
                 else "")
        warnings.warn(f"module is in training mode{where}; gcref converts its evaluation-mode "
                      f"function (batch norm with running statistics, dropout as the identity, "
                      f"a forward that reads self.training as in eval mode). Call module.eval() "
                      f"to silence this.", UserWarning, stacklevel=2)
    # a module that is itself a leaf (nn.Linear) has the path "": named by its type instead
    chain = [(name or type(module).__name__.lower(), layer)
             for name, layer in flatten_module(module, "")]
    chain = _check_sizes(chain, shape)
    emb, head = _split_head(chain, embedding)
    try:
        net = Network(emb, head, shape, name=type(module).__name__)
    except ValueError as err:
        raise ValueError(f"input_shape={shape} does not fit module: {err}") from None
    return net, _params_from(module, net)


def to_torch(net: Network, params, output: str = "logits") -> TorchNetwork:
    """The gcref network as a float64 ``torch.nn.Module`` in evaluation mode (the inverse of
    :func:`from_torch`): the same parameter names and values, the same function.

    ``output="logits"`` (default): ``forward`` gives the logits, ``embed`` the embedding;
    ``output="embedding"``: the embedding network alone (the head left out), e.g. to pass an
    embedding ``f`` to a GC implementation. Batch-norm ``num_batches_tracked`` is set to 0.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a gcref.nn.Network, got {type(net).__name__}")
    if output not in ("logits", "embedding"):
        raise ValueError(f"output must be 'logits' or 'embedding', got {output!r}")
    params = net.check_params(params)
    layers = leaves(net.embedding.children)
    if output == "logits":
        layers.append((net.head_name, net.head))
    model = TorchNetwork([(name, module_of(layer)) for name, layer in layers],
                         has_head=output == "logits", name=net.name)
    model = model.to(torch.float64).eval()
    state = {}
    for key, ref in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(ref)
        else:
            state[key] = torch.from_numpy(np.array(params[key], dtype=np.float64))
    model.load_state_dict(state, strict=True)
    return model
