"""Composite layers: ``Sequential`` chains, ``Residual`` connections and the ResNet ``BasicBlock``."""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from .activations import ReLU, Tanh
from .base import Layer, PiecewiseLinear, check_keys
from .linear import Conv2d, Linear
from .norm import BatchNorm2d

__all__ = ["Sequential", "Residual", "BasicBlock", "chain_second_order"]


# --------------------------------------------------------------------------------------------
# Composites
# --------------------------------------------------------------------------------------------

def _sub(params: dict, names: dict[str, str]) -> dict:
    return {local: params[full] for local, full in names.items()}


def chain_second_order(n: int, jvp, vjp, vjp_params, second_order, g, u):
    """The product rule for ``<g, J_n ... J_1 u>`` (``docs/theory.md`` §5.1), written once for
    both backends, over per-link callables (``i`` indexes the chain from the input):

    ``jvp(i, t) -> J_i t``; ``vjp(i, g) -> J_i^T g``; ``vjp_params(i, g) -> (J_i^T g, {key: grad})``;
    ``second_order(i, g, u) -> ({key: grad}, gx or None)``, keys being full parameter names.

    Forward tangents ``u_{i-1}`` (the input of link ``i``) and backward cotangents ``g_i`` (its
    output) feed each link's own ``second_order``; the input-dependent terms are carried down the
    primal chain by ordinary VJPs, adding to the earlier links' parameter gradients.
    Returns ``({key: grad}, gx or None)``.
    """
    tangents = [u]
    for i in range(n - 1):
        tangents.append(jvp(i, tangents[-1]))
    grads: dict = {}
    carried = None  # cotangent on the current link's output from input-dependent terms
    g_l = g
    for i in range(n - 1, -1, -1):
        gp, gx = second_order(i, g_l, tangents[i])
        _accumulate(grads, gp)
        if carried is not None:
            # the primal chain carries the input-dependent terms further back
            carried, gpc = vjp_params(i, carried)
            _accumulate(grads, gpc)
        if gx is not None:
            carried = gx if carried is None else carried + gx
        if i > 0:
            g_l = vjp(i, g_l)
    return grads, carried


def _accumulate(grads: dict, new: dict) -> None:
    for k, v in new.items():
        grads[k] = grads[k] + v if k in grads else v


class Sequential(Layer):
    """A chain ``a_l = L_l(a_{l-1})`` of named layers; parameter keys are ``"<name>.<local>"``.

    Derivatives of a chain are the chain rule written out: the VJP runs the children's VJPs in
    reverse, the JVP their JVPs forward, and ``second_order`` applies the product rule to
    ``<g, J_L ... J_1 u>`` (one term per child; input-dependent terms flow back along the primal
    chain).
    """

    def __init__(self, children: list[tuple[str, Layer]]):
        if not children:
            raise ValueError("Sequential needs at least one layer")
        names = [n for n, _ in children]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential layer names must be unique, got {names}")
        self.children = [(str(n), layer) for n, layer in children]

    def shapes(self, in_shape) -> list[tuple]:
        """Input shape of every child, then the output shape: a list of length len(children)+1."""
        shapes = [tuple(in_shape)]
        for name, layer in self.children:
            try:
                shapes.append(tuple(layer.out_shape(shapes[-1])))
            except ValueError as err:
                raise ValueError(f"layer '{name}': {err}") from None
        return shapes

    def out_shape(self, in_shape):
        return self.shapes(in_shape)[-1]

    def _specs(self, in_shape, which):
        out = {}
        for (name, layer), shp in zip(self.children, self.shapes(in_shape)):
            check_keys(layer, shp, name)
            for local, s in getattr(layer, which)(shp).items():
                out[f"{name}.{local}"] = tuple(s)
        return out

    def param_specs(self, in_shape):
        return self._specs(in_shape, "param_specs")

    def buffer_specs(self, in_shape):
        return self._specs(in_shape, "buffer_specs")

    def keys(self) -> tuple[str, ...]:
        """Every parameter and buffer key this chain reads (no input shape needed)."""
        return tuple(full for names in self._child_names() for full in names.values())

    def all_keys(self) -> list[str]:
        """``list(self.keys())`` (the name before the layer contract)."""
        return list(self.keys())

    @classmethod
    def examples(cls):
        return [("Sequential(tanh chain)",
                 cls([("0", Linear(4, 5)), ("1", Tanh()), ("2", Linear(5, 3)), ("3", Tanh())]), (4,))]

    def _child_names(self):
        # For each child, its local key -> the full key in this chain's parameter dict.
        if not hasattr(self, "_names"):
            self._names = [{loc: f"{name}.{loc}" for loc in layer.keys()}
                           for name, layer in self.children]
        return self._names

    def init(self, rng, in_shape):
        params = {}
        for (name, layer), shp in zip(self.children, self.shapes(in_shape)):
            check_keys(layer, shp, name)
            for local, v in layer.init(rng, shp).items():
                params[f"{name}.{local}"] = v
        return params

    def forward(self, p, x):
        caches = []
        for i, ((name, layer), names) in enumerate(zip(self.children, self._child_names())):
            self._check_child_keys(i, x.shape[1:])
            x, cache = layer.forward(_sub(p, names), x)
            caches.append(cache)
        return x, caches

    def _check_child_keys(self, i, in_shape):
        # keys() against the specs at the shape actually seen (once per child and shape), so a
        # chain used without a Network still fails with check_keys' message, not a KeyError
        seen = self.__dict__.setdefault("_keys_checked", set())
        if (i, in_shape) not in seen:
            name, layer = self.children[i]
            check_keys(layer, in_shape, name)
            seen.add((i, in_shape))

    def vjp(self, p, cache, gy, params=True):
        grads = {}
        for (name, layer), names, c in reversed(list(zip(self.children, self._child_names(), cache))):
            gy, gp = layer.vjp(_sub(p, names), c, gy, params=params)
            for local, v in gp.items():
                grads[f"{name}.{local}"] = v
        return gy, grads

    def jvp(self, p, cache, tx):
        for (name, layer), names, c in zip(self.children, self._child_names(), cache):
            tx = layer.jvp(_sub(p, names), c, tx)
        return tx

    def second_order(self, p, cache, g, u):
        # the product rule over the children (chain_second_order, docs/theory.md §5.1)
        links = [(name, layer, _sub(p, names), c)
                 for (name, layer), names, c in zip(self.children, self._child_names(), cache)]

        def full(i, grads):
            return {f"{links[i][0]}.{local}": v for local, v in grads.items()}

        def vjp_params(i, gy):
            _, layer, sub, c = links[i]
            gx, gp = layer.vjp(sub, c, gy, params=True)
            return gx, full(i, gp)

        def second_order(i, gi, ui):
            _, layer, sub, c = links[i]
            gp, gx = layer.second_order(sub, c, gi, ui)
            return full(i, gp), gx

        return chain_second_order(
            len(links), lambda i, t: links[i][1].jvp(links[i][2], links[i][3], t),
            lambda i, gy: links[i][1].vjp(links[i][2], links[i][3], gy, params=False)[0],
            vjp_params, second_order, g, u)

    def local_jacobian(self, p, x):
        jac = None
        for (name, layer), names in zip(self.children, self._child_names()):
            sub = _sub(p, names)
            local = layer.local_jacobian(sub, x)
            jac = local if jac is None else local @ jac
            x = layer.forward(sub, x[None])[0][0]
        return jac

    def describe(self):
        inner = ", ".join(f"{n}={l.describe()}" for n, l in self.children)
        return f"Sequential({inner})"


class Residual(Layer):
    """A residual connection ``y = main(x) + shortcut(x)`` (``shortcut`` a chain, or ``None``
    for the identity), the sum optionally followed by a piecewise-linear activation ``final``
    (ResNet's blocks: :class:`BasicBlock`, ``Bottleneck``). ``from_torch`` maps a traced
    ``out = f(x) + g(x)`` (``out += identity``) onto it.

    Parameter keys: the main chain's (``"<child>.<local>"``) and the shortcut's, prefixed with
    ``shortcut_prefix`` (``"downsample."`` in ResNet's blocks); they must not collide.

    Derivatives: the Jacobian is ``D (J_main + J_short)`` with ``D`` the diagonal derivative of
    ``final`` (the identity without one), fixed a.e. because ``final`` is piecewise linear; so the
    VJP, JVP and second order (``docs/theory.md`` §5.1) of the two branches add, behind ``D``.
    """

    def __init__(self, main, shortcut=None, shortcut_prefix: str = "", final=None):
        if not isinstance(main, Sequential):
            raise TypeError(f"main must be a gcref.nn.Sequential, got {type(main).__name__}")
        if shortcut is not None and not isinstance(shortcut, Sequential):
            raise TypeError(f"shortcut must be a gcref.nn.Sequential or None (the identity), got "
                            f"{type(shortcut).__name__}")
        if final is not None and not isinstance(final, PiecewiseLinear):
            raise TypeError(f"final must be a piecewise-linear activation (ReLU) or None, got "
                            f"{type(final).__name__}")
        self.main, self.shortcut, self.final = main, shortcut, final
        self.shortcut_prefix = str(shortcut_prefix)
        keys = list(self.keys())
        if len(set(keys)) != len(keys):
            raise ValueError(f"Residual: the main chain and the shortcut share parameter names "
                             f"{sorted({k for k in keys if keys.count(k) > 1})}")

    def _parts(self):
        parts = [("", self.main)]
        if self.shortcut is not None:
            parts.append((self.shortcut_prefix, self.shortcut))
        return parts

    def keys(self):
        return tuple(pre + k for pre, part in self._parts() for k in part.keys())

    def all_keys(self):
        """``list(self.keys())`` (the name before the layer contract)."""
        return list(self.keys())

    @classmethod
    def examples(cls):
        main = Sequential([("0", Linear(4, 4)), ("1", Tanh()), ("2", Linear(4, 4))])
        conv = Sequential([("conv", Conv2d(2, 3, 3, 2, 1)), ("act", Tanh())])
        return [("Residual(id)", cls(main), (4,)),
                ("Residual(shortcut)", cls(conv, Sequential([("0", Conv2d(2, 3, 1, 2, 0))]),
                                           "downsample."), (2, 5, 5))]

    def _split(self, p):
        main = {k: p[k] for k in self.main.keys()}
        short = None
        if self.shortcut is not None:
            short = {k: p[self.shortcut_prefix + k] for k in self.shortcut.keys()}
        return main, short

    def param_specs(self, in_shape):
        return {pre + k: v for pre, part in self._parts() for k, v in part.param_specs(in_shape).items()}

    def buffer_specs(self, in_shape):
        return {pre + k: v for pre, part in self._parts() for k, v in part.buffer_specs(in_shape).items()}

    def out_shape(self, in_shape):
        out = self.main.out_shape(in_shape)
        if self.shortcut is not None:
            short = self.shortcut.out_shape(in_shape)
        else:
            short = tuple(in_shape)
        if short != out:
            raise ValueError(f"{type(self).__name__} shortcut shape {short} does not match main "
                             f"path {out}")
        return out

    def init(self, rng, in_shape):
        return {pre + k: v for pre, part in self._parts() for k, v in part.init(rng, in_shape).items()}

    def forward(self, p, x):
        pm, pd = self._split(p)
        ym, cm = self.main.forward(pm, x)
        if self.shortcut is not None:
            ys, cd = self.shortcut.forward(pd, x)
        else:
            ys, cd = x, None
        if self.final is None:
            return ym + ys, (cm, cd, None)
        y, cf = self.final.forward({}, ym + ys)
        return y, (cm, cd, cf)

    def _behind_final(self, cf, g):
        """``D^T g``: the cotangent on the sum (``D`` the final activation's derivative)."""
        return g if self.final is None else self.final.vjp({}, cf, g)[0]

    def vjp(self, p, cache, gy, params=True):
        pm, pd = self._split(p)
        cm, cd, cf = cache
        gs = self._behind_final(cf, gy)
        gx, grads = self.main.vjp(pm, cm, gs, params=params)
        if self.shortcut is not None:
            gxd, gpd = self.shortcut.vjp(pd, cd, gs, params=params)
            gx = gx + gxd
            grads.update({self.shortcut_prefix + k: v for k, v in gpd.items()})
        else:
            gx = gx + gs
        return gx, grads

    def jvp(self, p, cache, tx):
        pm, pd = self._split(p)
        cm, cd, cf = cache
        ts = self.main.jvp(pm, cm, tx)
        ts = ts + (self.shortcut.jvp(pd, cd, tx) if self.shortcut is not None else tx)
        return ts if self.final is None else self.final.jvp({}, cf, ts)

    def second_order(self, p, cache, g, u):
        # J = D (J_main + J_short): D is fixed (a.e.), so the terms add.
        pm, pd = self._split(p)
        cm, cd, cf = cache
        gs = self._behind_final(cf, g)
        grads, gx = self.main.second_order(pm, cm, gs, u)
        if self.shortcut is not None:
            gpd, gxd = self.shortcut.second_order(pd, cd, gs, u)
            grads.update({self.shortcut_prefix + k: v for k, v in gpd.items()})
            if gxd is not None:
                gx = gxd if gx is None else gx + gxd
        return grads, gx

    def local_jacobian(self, p, x):
        pm, pd = self._split(p)
        jac = self.main.local_jacobian(pm, x)
        if self.shortcut is not None:
            jac = jac + self.shortcut.local_jacobian(pd, x)
        else:
            jac = jac + np.eye(x.size)
        if self.final is None:
            return jac
        _, (_, _, cf) = self.forward(p, x[None])
        z = cf[0][0]                                     # the final activation's input
        return self.final.local_jacobian({}, z) @ jac

    def describe(self):
        short = "identity" if self.shortcut is None else self.shortcut.describe()
        final = "" if self.final is None else f", final={self.final.describe()}"
        return f"Residual(main={self.main.describe()}, shortcut={short}{final})"


class BasicBlock(Residual):
    """ResNet basic block (He et al. 2016), evaluation-mode batch norm, PyTorch names.

    ``y = relu( bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x) )`` with 3x3 convolutions (no bias),
    ``shortcut = downsample = [1x1 conv (stride s, no bias), bn]`` when the stride is not 1 or the
    channel count changes, else the identity. The residual computation is :class:`Residual`'s.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = check_int(out_channels, "out_channels", minimum=1)
        self.stride = check_int(stride, "stride", minimum=1)
        main = Sequential([
            ("conv1", Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)),
            ("bn1", BatchNorm2d(out_channels)),
            ("relu", ReLU()),
            ("conv2", Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)),
            ("bn2", BatchNorm2d(out_channels)),
        ])
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = Sequential([
                ("0", Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)),
                ("1", BatchNorm2d(out_channels)),
            ])
        super().__init__(main, downsample, "downsample.", final=ReLU())

    @property
    def downsample(self):
        """The shortcut chain (``None``: the identity), torchvision's name."""
        return self.shortcut

    @classmethod
    def examples(cls):
        return [("BasicBlock(id)", cls(2, 2, 1), (2, 4, 4)), ("BasicBlock(down)", cls(2, 3, 2), (2, 5, 5))]

    def describe(self):
        return f"BasicBlock({self.in_channels}, {self.out_channels}, stride={self.stride})"
