"""The ``layers``, ``networks`` and ``parameters`` groups of ``gcref check``: every layer's
derivatives and every zoo network's Jacobians against central finite differences and against each
other, and the ``.npz`` parameter round trip."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..nn.params_io import load_params, save_params
from ..testing import (EXACT_RTOL, CheckResult, check_gradient, check_jacobian, check_jvp, check_layer,
                       check_vjp, check_vjp_jvp, relative_error)
from .cases import layer_cases, perturbed_params, small_zoo

__all__ = ["layer_checks", "network_checks", "layers_group", "networks_group", "parameters_group"]


# ------------------------------------------------------------------------------------- layers

def layer_checks(label, layer, in_shape, seed: int = 0) -> list[CheckResult]:
    """Every derivative of one layer against finite differences and against each other:
    :func:`gcref.testing.check_layer` with this label."""
    return list(check_layer(layer, in_shape, seed, label=label))


def layers_group(seed: int) -> list[CheckResult]:
    results = []
    for i, (label, layer, shape) in enumerate(layer_cases()):
        results.extend(layer_checks(label, layer, shape, seed + i))
    return results


# ------------------------------------------------------------------------------------ networks

def network_checks(net, seed: int = 0, full_jacobian: bool = True) -> list[CheckResult]:
    """Derivatives of a whole network: VJP/JVP against FD and each other, Jacobians three ways."""
    rng = np.random.default_rng(seed)
    params = perturbed_params(net, seed)
    X = rng.normal(size=(2,) + net.input_shape)
    label = net.name
    out = []
    p64 = net.check_params(params)
    _, _, cache = net.forward_cache(p64, X)
    for output in ("embedding", "logits"):
        def f(xx, output=output):
            Z, logits, _ = net.forward_cache(p64, xx)
            return Z if output == "embedding" else logits
        out.append(check_vjp(f, lambda v, o=output: net.vjp_cached(p64, cache, v, o, need_params=False)[0],
                             X, seed=seed, name=f"{label}: {output} VJP wrt input vs FD"))
        out.append(check_jvp(f, lambda t, o=output: net.jvp_cached(p64, cache, t, o), X, seed=seed,
                             name=f"{label}: {output} JVP vs FD"))
    k = net.num_classes
    v = rng.normal(size=(X.shape[0], k))
    trainable = net.param_names
    out.append(check_gradient(lambda pp: float(np.vdot(v, net.forward_cache({**p64, **pp}, X)[1])),
                              lambda pp: net.vjp({**p64, **pp}, X, v, output="logits")[1],
                              {kk: p64[kk] for kk in trainable}, seed=seed,
                              name=f"{label}: logits VJP wrt parameters vs FD"))
    out.append(check_vjp_jvp(lambda w: net.vjp_cached(p64, cache, w, "embedding", need_params=False)[0],
                             lambda t: net.jvp_cached(p64, cache, t, "embedding"),
                             X.shape, (X.shape[0], net.embedding_dim), seed=seed,
                             name=f"{label}: VJP vs JVP (transpose)"))
    j_rev = net.jacobian(params, X, mode="reverse")
    j_fwd = net.jacobian(params, X, mode="forward")
    err = relative_error(j_rev, j_fwd)
    out.append(CheckResult(f"{label}: Jacobian reverse vs forward mode", err, EXACT_RTOL, err <= EXACT_RTOL))
    j_chain = net.local_jacobian_chain(params, X[0])
    err = relative_error(j_rev[0], j_chain)
    out.append(CheckResult(f"{label}: Jacobian = chain of local Jacobians", err, 1e-10, err <= 1e-10))
    if full_jacobian and net.input_dim <= 256:
        out.append(check_jacobian(lambda xx: net.forward_cache(p64, xx[None])[0][0],
                                  # Jacobian at xx, in the batch of j_rev (so bitwise j_rev[0] at X[0])
                                  lambda xx: net.jacobian(params, np.concatenate([xx[None], X[1:]]),
                                                          mode="reverse")[0], X[0],
                                  name=f"{label}: Jacobian vs FD"))
    return out


def networks_group(seed: int) -> list[CheckResult]:
    results = []
    for i, net in enumerate(small_zoo()):
        results.extend(network_checks(net, seed + i))
    return results


def parameters_group(seed: int) -> list[CheckResult]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in small_zoo():
            params = perturbed_params(net, seed)
            path = os.path.join(tmp, "p.npz")
            save_params(path, params, net)
            loaded = load_params(path, net)
            same_keys = set(loaded) == set(params)
            err = max(float(np.max(np.abs(loaded[k] - params[k]), initial=0.0)) for k in params) if same_keys else np.inf
            # PyTorch layouts: linear (out, in), conv (out, in, kh, kw)
            layout_ok = all(
                (np.ndim(v) in (1, 2, 4)) for v in loaded.values())
            results.append(CheckResult(f"{net.name}: .npz round trip (PyTorch names/layouts)", err, 0.0,
                                       same_keys and layout_ok and err == 0.0))
            bad = dict(params)
            first = next(iter(bad))
            bad[first] = np.zeros(np.shape(bad[first]) + (1,))
            try:
                net.check_params(bad)
                ok = False
            except ValueError as e:
                ok = first in str(e)
            results.append(CheckResult(f"{net.name}: mis-shaped parameter rejected by name", 0.0 if ok else 1.0,
                                       0.0, ok))
    return results
