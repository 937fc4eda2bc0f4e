"""DVRL: Data Valuation using Reinforcement Learning (Yoon, Arik, Pfister, ICML 2020).

A data value estimator (DVE) h_phi(x, y) in [0, 1] gives each training point a selection
probability. Each outer iteration draws a selection s_i ~ Bernoulli(h_phi(x_i, y_i)) over
a batch, trains a predictor f_theta on the selected points and rewards the DVE with the
predictor's validation performance; the DVE follows the REINFORCE gradient (paper, Sec. 3,
Algorithm 1)

    grad_phi = reward * grad_phi log pi_phi(s),
    log pi_phi(s) = sum_i s_i log h_i + (1 - s_i) log(1 - h_i).

What is implemented is the authors' public code (google-research, ``dvrl/dvrl.py``), which
differs from the paper's pseudo-code in ways that keep the values from collapsing:

- The DVE sees x concatenated with one-hot(y); its last hidden layer (``comb_dim`` units)
  is concatenated with the *marginal information* |one-hot(y) - p_val(x)|, where p_val is
  the predictor trained once on the validation set, and the result goes through one more
  ReLU layer and a sigmoid. The same marginal information is used to score new points.
- The reward is ``metric(predictor on selection) - baseline`` with a *fixed* baseline: the
  metric of the predictor trained once on all the training data (not a moving average).
- The loss adds ``1e3 * (max(mean h - 0.9, 0) + max(0.1 - mean h, 0))``, which keeps the
  mean selection probability in [0.1, 0.9] (exploration); logs get ``+ 1e-8``.
- The predictor restarts from the same saved initial weights at every iteration; if no
  point is selected, the selection is redrawn with probability 0.5 each.

Differences from the reference, on purpose: the predictor is trained for
``inner_iterations`` mini-batch Adam *steps* on the selected points only (the reference's
Keras ``fit(..., sample_weight=s, epochs=inner_iterations)`` runs that many epochs over the
whole batch with zero weights; steps keep 2,000 outer iterations to minutes on a CPU),
the predictor's Adam state is reset with its weights (Keras keeps it across ``fit`` calls),
features are standardised with the training set's mean and scale (``standardize``), and
the default reward is the validation log-likelihood (the reference's ``log_loss`` option;
its example scripts use AUC and accuracy, which were too coarse on 10-class embeddings).
Known failure mode, kept from the reference: the 1e3 penalty is a gradient hundreds of
times the REINFORCE one on the iteration where the mean probability leaves [0.1, 0.9];
through Adam's momentum it can kill every ReLU of the DVE, which then gives every point
the same value. ``fit`` warns when that happens; ``spread_`` shows when it did.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ads._validation import (
    SCORE_BLOCK_ROWS,
    check_int,
    check_labels,
    check_matrix,
    check_positive_float,
    check_random_state,
)
from ads.errors import DataError, ParameterError
from ads.regress import AGGREGATIONS, aggregate_top, top_classes

if TYPE_CHECKING:
    import torch

PREDICTORS = ("logistic", "mlp")
METRICS = ("accuracy", "log_loss", "auc")

_OWNER = "DVRL"
_EPSILON = 1e-8  # inside the logs of the policy (reference: ``self.epsilon``)
_THRESHOLD = 0.9  # mean selection probability is kept in [1 - 0.9, 0.9]
_PENALTY = 1e3  # weight of that constraint in the DVE loss
_ADAM_EPS = 1e-7  # Keras' Adam epsilon, which the reference's predictor uses
_BLOCK = SCORE_BLOCK_ROWS  # rows per DVE / predictor evaluation block when scoring


# --------------------------------------------------------------------------- predictor


def _glorot(fan_in: int, fan_out: int, gen):
    """Glorot-uniform weights (fan_in, fan_out): Keras' Dense default, as the reference's."""
    import torch

    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(fan_in, fan_out, generator=gen, dtype=torch.float32) * 2 - 1) * bound


class _Predictor:
    """The inner model f_theta: restarts from one saved initial state at every training.

    ``logistic`` (multinomial logistic regression) and ``mlp`` (two ReLU hidden layers of
    ``hidden_dim``, the reference's Keras predictor) are trained by a hand-written
    forward/backward pass and Adam (a few times faster than autograd for models this
    small); a module factory ``f(n_features, n_classes) -> torch.nn.Module`` returning
    logits is trained with autograd and ``torch.optim.Adam``.
    """

    def __init__(self, spec, n_features: int, n_classes: int, hidden_dim: int, lr: float,
                 steps: int, batch_size: int, gen):
        import copy

        import torch

        self.n_classes, self.lr, self.steps, self.batch_size = n_classes, lr, steps, batch_size
        if callable(spec):
            module = spec(n_features, n_classes)
            if not isinstance(module, torch.nn.Module):
                raise ParameterError(
                    f"The 'predictor' parameter of {_OWNER} must be one of {list(PREDICTORS)} or a callable "
                    f"(n_features, n_classes) -> torch.nn.Module. The callable returned {type(module).__name__}."
                )
            self.module = module.float()
            self.init = copy.deepcopy(self.module.state_dict())
        else:
            self.module = None
            sizes = [n_features] + ([hidden_dim, hidden_dim] if spec == "mlp" else []) + [n_classes]
            # All weights live in one flat buffer, so Adam is a handful of whole-buffer ops.
            self.shapes = []
            parts = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                self.shapes += [(a, b), (b,)]
                parts += [_glorot(a, b, gen).reshape(-1), torch.zeros(b)]
            self.init = torch.cat(parts)

    def _views(self, flat):
        """[W1, b1, W2, b2, ...] as views of a flat buffer."""
        out, pos = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            out.append(flat[pos:pos + size].view(shape))
            pos += size
        return out

    def train(self, x, y, gen):
        """Train from the initial state on (x float32 (k, d), y int64 (k,)); return the state."""
        if self.module is not None:
            return self._train_module(x, y, gen)
        return self._train_manual(x, y, gen)

    def _batches(self, n: int, gen):
        """Mini-batch index tensors (None = the whole set): shuffled epochs, last partial batch dropped."""
        import torch

        if n <= self.batch_size:
            for _ in range(self.steps):
                yield None
            return
        pos, order = n, None
        for _ in range(self.steps):
            if pos + self.batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            yield order[pos:pos + self.batch_size]
            pos += self.batch_size

    def _train_manual(self, x, y, gen):
        import torch

        flat = self.init.clone()
        grad = torch.zeros_like(flat)
        m = torch.zeros_like(flat)
        v = torch.zeros_like(flat)
        params, grads = self._views(flat), self._views(grad)
        onehot = torch.nn.functional.one_hot(y, self.n_classes).to(torch.float32)
        n_layers = len(params) // 2
        with torch.no_grad():
            for t, idx in enumerate(self._batches(x.shape[0], gen), start=1):
                xb, yb = (x, onehot) if idx is None else (x.index_select(0, idx), onehot.index_select(0, idx))
                acts = [xb]
                for i in range(n_layers - 1):
                    acts.append(torch.addmm(params[2 * i + 1], acts[-1], params[2 * i]).relu_())
                z = torch.addmm(params[-1], acts[-1], params[-2])
                # d(mean cross-entropy)/d logits = (softmax - onehot) / batch
                g = torch.softmax(z, dim=1).sub_(yb).div_(xb.shape[0])
                for i in range(n_layers - 1, -1, -1):
                    torch.mm(acts[i].T, g, out=grads[2 * i])
                    torch.sum(g, 0, out=grads[2 * i + 1])
                    if i:
                        g = (g @ params[2 * i].T).mul_(acts[i] > 0)
                # Adam as Keras writes it: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
                m.lerp_(grad, 0.1)
                v.mul_(0.999).addcmul_(grad, grad, value=0.001)
                lr_t = self.lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
                flat.addcdiv_(m, v.sqrt().add_(_ADAM_EPS), value=-lr_t)
        return flat

    def _train_module(self, x, y, gen):
        import torch
        import torch.nn.functional as F

        self.module.load_state_dict(self.init)
        self.module.train()
        opt = torch.optim.Adam(self.module.parameters(), lr=self.lr, eps=_ADAM_EPS)
        for idx in self._batches(x.shape[0], gen):
            xb, yb = (x, y) if idx is None else (x.index_select(0, idx), y.index_select(0, idx))
            loss = F.cross_entropy(self.module(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return {k: t.detach().clone() for k, t in self.module.state_dict().items()}

    def proba(self, state, x):
        """Class probabilities (float64 numpy, (n, C)) of the model in ``state``."""
        import torch

        out = []
        with torch.no_grad():
            if self.module is not None:
                self.module.load_state_dict(state)
                self.module.eval()
            for s in range(0, x.shape[0], _BLOCK):
                xb = x[s:s + _BLOCK]
                if self.module is not None:
                    z = self.module(xb)
                    if z.ndim != 2 or z.shape[1] != self.n_classes:
                        raise ParameterError(
                            f"The 'predictor' module of {_OWNER} must return logits of shape (n, {self.n_classes}). "
                            f"Got {tuple(z.shape)}."
                        )
                else:
                    params = self._views(state)
                    h = xb
                    for i in range(len(params) // 2 - 1):
                        h = torch.addmm(params[2 * i + 1], h, params[2 * i]).relu_()
                    z = torch.addmm(params[-1], h, params[-2])
                out.append(torch.softmax(z.double(), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_classes))


def _performance(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """Validation performance, higher is better (reference ``perf_metric``; log-loss negated)."""
    if metric == "accuracy":
        return float(np.mean(np.argmax(proba, axis=1) == y))
    if metric == "log_loss":
        p = np.clip(proba[np.arange(y.shape[0]), y], 1e-15, None)
        return float(np.mean(np.log(p)))
    from sklearn.metrics import roc_auc_score

    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=np.arange(proba.shape[1])))


def marginal_information(y_onehot: np.ndarray, proba_val: np.ndarray) -> np.ndarray:
    """|one-hot(y) - p_val(x)|, the DVE's extra input (reference ``y_pred_diff``), (n, C)."""
    return np.abs(np.asarray(y_onehot, dtype=np.float64) - np.asarray(proba_val, dtype=np.float64))


# --------------------------------------------------------------------------- value estimator


def _value_estimator(n_features: int, n_classes: int, hidden_dim: int, layer_number: int, comb_dim: int, gen):
    """The reference's DVE: ``layer_number - 2`` ReLU layers on [x, onehot(y)] (hidden_dim
    wide, the last comb_dim), concatenation with the marginal information, one ReLU layer
    of comb_dim, a sigmoid unit. Glorot-uniform weights, zero biases (TF defaults)."""
    import torch
    import torch.nn as nn

    class ValueEstimator(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [n_features + n_classes] + [hidden_dim] * (layer_number - 2) + [comb_dim]
            self.body = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
            self.comb = nn.Linear(comb_dim + n_classes, comb_dim)
            self.out = nn.Linear(comb_dim, 1)

        def forward(self, x, y_onehot, marginal):
            h = torch.cat((x, y_onehot), dim=1)
            for layer in self.body:
                h = torch.relu(layer(h))
            h = torch.relu(self.comb(torch.cat((h, marginal), dim=1)))
            return torch.sigmoid(self.out(h)).squeeze(1)

    dve = ValueEstimator()
    with torch.no_grad():
        for layer in [*dve.body, dve.comb, dve.out]:
            nn.init.xavier_uniform_(layer.weight, generator=gen)
            layer.bias.zero_()
    return dve


def _select(p: np.ndarray, rng) -> np.ndarray:
    """The selection s_i ~ Bernoulli(p_i); redrawn with probability 0.5 each while empty (reference)."""
    sel = rng.random(p.shape[0]) < p
    while not sel.any():
        sel = rng.random(p.shape[0]) < 0.5
    return sel


def _policy_loss(prob, s, reward: float):
    """DVE loss: -reward * log pi_phi(s) (REINFORCE, paper Sec. 3) + the reference's [0.1, 0.9] penalty."""
    import torch

    log_pi = (s * torch.log(prob + _EPSILON) + (1 - s) * torch.log(1 - prob + _EPSILON)).sum()
    mean_p = prob.mean()
    return -reward * log_pi + _PENALTY * (
        torch.clamp(mean_p - _THRESHOLD, min=0) + torch.clamp((1 - _THRESHOLD) - mean_p, min=0)
    )


@contextlib.contextmanager
def _threads(n: int | None):
    """Run with ``n`` torch intra-op threads, then restore the previous setting."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class _FitData:
    """The standardised training and validation sets of one fit, as the networks take them."""

    x: torch.Tensor  # float32 (n, d)
    x_val: torch.Tensor  # float32 (n_val, d)
    y: torch.Tensor  # int64 (n,)
    y_val: torch.Tensor  # int64 (n_val,)
    y_val_np: np.ndarray  # y_val as given, for the metric
    onehot: np.ndarray  # float64 (n, C), one-hot(y)


# --------------------------------------------------------------------------- validation


def _check_positive_float(value, name: str) -> float:
    return check_positive_float(value, name, _OWNER)


def _check_features(X, name: str, dim: int | None = None) -> np.ndarray:
    return check_matrix(X, name, _OWNER, dim=dim)


def _check_labels(y, name: str, n: int) -> np.ndarray:
    return check_labels(y, name, _OWNER, n=n)


# --------------------------------------------------------------------------- estimator


class DVRL:
    """DVRL valuer (values of labeled points) and scorer (scores of unlabeled points).

    Parameters
    ----------
    hidden_dim, layer_number, comb_dim : int, default 100, 5, 10
        DVE architecture (reference defaults); ``layer_number >= 3``.
    iterations : int, default 2000
        Outer (REINFORCE) iterations.
    learning_rate : float, default 0.01
        Adam learning rate of the DVE.
    batch_size : int, default 2000
        Training points per outer iteration (all of them when there are fewer).
    predictor : {"logistic", "mlp"} or callable, default "logistic"
        The inner model: multinomial logistic regression, the reference's MLP (two ReLU
        layers of ``hidden_dim``), or ``f(n_features, n_classes) -> torch.nn.Module``
        returning logits.
    inner_iterations : int, default 100
        Adam mini-batch steps of each predictor training.
    batch_size_predictor : int, default 256
        Mini-batch size of the predictor.
    predictor_lr : float, default 0.01
        Adam learning rate of the predictor.
    metric : {"log_loss", "accuracy", "auc"}, default "log_loss"
        Validation performance that the reward is made of: mean log-likelihood (negated
        log-loss), accuracy, or AUC (binary, or one-vs-rest macro AUC, which needs every
        class in the validation set). The reference offers the three; log-loss is the
        default because it is continuous: with accuracy, the reward on 10-class
        Fashion-MNIST embeddings was too coarse and noisy to learn from (see
        benchmarks/README.md).
    standardize : bool, default True
        Centre and scale the features with the training set's mean and standard deviation
        (right for embeddings and raw numeric features). Pass False for features already
        scaled to [0, 1] with many one-hot columns (the reference's min-max Adult), which
        standardising blows up.
    top_m : int, default 10
        Scorer: candidate classes per unlabeled point (by probability; ties -> lower index).
    aggregate : {"max", "mean", "weighted"}, default "max"
        Scorer: aggregation of the DVE values over the candidate classes, as
        :class:`ads.regress.ValueRegressor`.
    n_jobs : int or None, default 1
        torch threads while fitting and scoring (restored afterwards); None = torch's
        setting. The networks are small: one thread is the fastest (several times faster
        on a busy machine), and values depend on the thread count through float rounding.
    random_state : int or None
        Seed of everything random (initial weights, batches, selections); same seed and
        inputs -> same values, on CPU.
    progress : bool, default True
        tqdm progress bar on stderr.

    Attributes
    ----------
    values_ : ndarray of float64, shape (n,)
        DVE selection probabilities of the training points (the data values).
    marginal_ : ndarray of float64, shape (n, C)
        |one-hot(y) - p_val(x)| of the training points.
    baseline_ : float
        Validation performance of the predictor trained on all training points.
    rewards_, selection_rate_, spread_ : ndarray of float64, shape (iterations,)
        Reward, mean and standard deviation of the DVE probabilities over the batch, at
        each outer iteration (a spread near 0 means the values collapsed).
    n_classes_, n_features_in_, mean_, scale_, dve_, predictor_, val_state_
        Fitted state.
    """

    def __init__(self, hidden_dim: int = 100, layer_number: int = 5, comb_dim: int = 10, iterations: int = 2000,
                 learning_rate: float = 0.01, batch_size: int = 2000, predictor="logistic",
                 inner_iterations: int = 100, batch_size_predictor: int = 256, predictor_lr: float = 0.01,
                 metric: str = "log_loss", standardize: bool = True, top_m: int = 10, aggregate: str = "max",
                 n_jobs: int | None = 1, random_state=None, progress: bool = True):
        self.hidden_dim = hidden_dim
        self.layer_number = layer_number
        self.comb_dim = comb_dim
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.predictor = predictor
        self.inner_iterations = inner_iterations
        self.batch_size_predictor = batch_size_predictor
        self.predictor_lr = predictor_lr
        self.metric = metric
        self.standardize = standardize
        self.top_m = top_m
        self.aggregate = aggregate
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    # ----------------------------------------------------------------- checks

    def _check_params(self):
        check_int(self.hidden_dim, "hidden_dim", _OWNER, min_value=1)
        check_int(self.layer_number, "layer_number", _OWNER, min_value=3)
        check_int(self.comb_dim, "comb_dim", _OWNER, min_value=1)
        check_int(self.iterations, "iterations", _OWNER, min_value=1)
        check_int(self.batch_size, "batch_size", _OWNER, min_value=1)
        check_int(self.inner_iterations, "inner_iterations", _OWNER, min_value=1)
        check_int(self.batch_size_predictor, "batch_size_predictor", _OWNER, min_value=1)
        _check_positive_float(self.learning_rate, "learning_rate")
        _check_positive_float(self.predictor_lr, "predictor_lr")
        if not callable(self.predictor) and self.predictor not in PREDICTORS:
            raise ParameterError(
                f"The 'predictor' parameter of {_OWNER} must be one of {list(PREDICTORS)} or a callable "
                f"(n_features, n_classes) -> torch.nn.Module. Got {self.predictor!r}."
            )
        if self.metric not in METRICS:
            raise ParameterError(f"The 'metric' parameter of {_OWNER} must be one of {list(METRICS)}. Got {self.metric!r}.")
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ParameterError(f"The 'standardize' parameter of {_OWNER} must be a bool. Got {self.standardize!r}.")
        self._check_scorer_params(self.top_m, self.aggregate)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", _OWNER, min_value=1)
        check_random_state(self.random_state, _OWNER)

    @staticmethod
    def _check_scorer_params(top_m, aggregate):
        check_int(top_m, "top_m", _OWNER, min_value=1)
        if aggregate not in AGGREGATIONS:
            raise ParameterError(f"The 'aggregate' parameter of {_OWNER} must be one of {list(AGGREGATIONS)}. Got {aggregate!r}.")

    def _check_fitted(self):
        if not hasattr(self, "dve_"):
            raise ParameterError(f"This {_OWNER} instance is not fitted yet: call fit(X, y, X_val, y_val) first.")

    # ----------------------------------------------------------------- fit

    def fit(self, X, y, X_val, y_val, n_classes: int | None = None):
        """Train the DVE; ``values_`` are the values of the training points.

        Parameters
        ----------
        X : array (n, d)
            Training features (e.g. embeddings); any numeric dtype.
        y : array (n,)
            Integer training labels in 0..C-1.
        X_val : array (n_val, d), y_val : array (n_val,)
            Validation set the reward is measured on.
        n_classes : int, optional
            C; default ``max(y.max(), y_val.max()) + 1``.

        Returns
        -------
        self
        """
        self._check_params()
        with _threads(self.n_jobs):
            return self._fit(X, y, X_val, y_val, n_classes)

    def _fit(self, X, y, X_val, y_val, n_classes):
        """Algorithm 1 of the paper, as the reference code runs it, one step per method below."""
        data = self._prepare(X, y, X_val, y_val, n_classes)
        rng = np.random.default_rng(self.random_state)
        batch_gen = self._init_networks(rng)
        self._fit_baselines(data, batch_gen)
        self._train_estimator(data, rng, batch_gen)
        return self._finish(data)

    def _prepare(self, X, y, X_val, y_val, n_classes) -> _FitData:
        """Check the inputs, standardise them with the training set's statistics, make tensors."""
        import torch

        X = _check_features(X, "X")
        y = _check_labels(y, "y", X.shape[0])
        X_val = _check_features(X_val, "X_val", X.shape[1])
        y_val = _check_labels(y_val, "y_val", X_val.shape[0])
        C = self._check_classes(y, y_val, n_classes)
        self.n_classes_, self.n_features_in_ = C, X.shape[1]
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.mean_, self.scale_ = np.zeros(X.shape[1]), np.ones(X.shape[1])
        return _FitData(x=self._features(X), x_val=self._features(X_val), y=torch.as_tensor(y),
                        y_val=torch.as_tensor(y_val), y_val_np=y_val, onehot=np.eye(C)[y])

    def _check_classes(self, y, y_val, n_classes) -> int:
        """The number of classes C, checked against both label sets and the metric."""
        C = int(max(y.max(), y_val.max())) + 1 if n_classes is None else check_int(n_classes, "n_classes", _OWNER, min_value=2)
        if C < 2:
            raise DataError(f"{_OWNER} needs at least 2 classes. Got labels of a single class {int(y.max())}.")
        for name, lab in (("y", y), ("y_val", y_val)):
            check_labels(lab, name, _OWNER, n_classes=C)
        if self.metric == "auc" and np.unique(y_val).size < C:
            raise DataError(f"metric='auc' needs every one of the {C} classes in y_val. Got {np.unique(y_val).size}.")
        return C

    def _init_networks(self, rng) -> torch.Generator:
        """Initial weights of f_theta and h_phi; returns the generator of the predictor's batches."""
        import torch

        init_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.random.fork_rng(devices=[]):
            # torch.nn layers (and a module factory) draw initial weights from the global
            # torch RNG: seed it inside a fork so that the caller's RNG state is left alone.
            torch.manual_seed(int(rng.integers(2**62)))
            self.predictor_ = _Predictor(self.predictor, self.n_features_in_, self.n_classes_, self.hidden_dim,
                                         self.predictor_lr, self.inner_iterations, self.batch_size_predictor, init_gen)
            self.dve_ = _value_estimator(self.n_features_in_, self.n_classes_, self.hidden_dim, self.layer_number,
                                         self.comb_dim, init_gen)
        return batch_gen

    def _fit_baselines(self, data: _FitData, batch_gen) -> None:
        """The reference's additions to the paper: marginal information and a fixed reward baseline."""
        # Marginal information from a predictor fit on the validation set (reference val_model).
        self.val_state_ = self.predictor_.train(data.x_val, data.y_val, batch_gen)
        self.marginal_ = marginal_information(data.onehot, self.predictor_.proba(self.val_state_, data.x))
        # Fixed baseline: the predictor trained on all training points (reference ori_model).
        full_state = self.predictor_.train(data.x, data.y, batch_gen)
        self.baseline_ = _performance(self.metric, data.y_val_np, self.predictor_.proba(full_state, data.x_val))

    def _train_estimator(self, data: _FitData, rng, batch_gen) -> None:
        """The outer loop of Algorithm 1: ``iterations`` REINFORCE updates of the DVE on random batches."""
        import torch
        from tqdm.auto import tqdm

        inputs = (data.x, torch.as_tensor(data.onehot, dtype=torch.float32),
                  torch.as_tensor(self.marginal_, dtype=torch.float32))
        opt = torch.optim.Adam(self.dve_.parameters(), lr=self.learning_rate)
        n = data.x.shape[0]
        batch = min(self.batch_size, n)
        rewards, rates, spreads = np.empty(self.iterations), np.empty(self.iterations), np.empty(self.iterations)
        bar = tqdm(range(self.iterations), desc="DVRL", unit="it", file=sys.stderr,
                   disable=not self.progress, leave=False, mininterval=1.0)
        self.dve_.train()
        for it in bar:
            idx = np.sort(rng.permutation(n)[:batch]) if batch < n else np.arange(n)
            reward, p = self._reinforce_step(data, inputs, idx, rng, batch_gen, opt)
            rewards[it], rates[it], spreads[it] = reward, float(p.mean()), float(p.std())
            if self.progress and (it + 1) % 50 == 0:
                bar.set_postfix(reward=f"{rewards[it - 49:it + 1].mean():+.4f}", mean_p=f"{rates[it]:.3f}", refresh=False)
        bar.close()
        self.dve_.eval()
        self.rewards_, self.selection_rate_, self.spread_ = rewards, rates, spreads

    def _reinforce_step(self, data: _FitData, inputs, idx, rng, batch_gen, opt) -> tuple[float, np.ndarray]:
        """One iteration of Algorithm 1: s ~ Bernoulli(h_phi), f_theta trained on s, one step on phi."""
        import torch

        idx_t = torch.as_tensor(idx)
        prob = self.dve_(*(t[idx_t] for t in inputs))
        p = prob.detach().double().numpy()
        sel = _select(p, rng)
        chosen = torch.as_tensor(idx[sel])
        state = self.predictor_.train(data.x[chosen], data.y[chosen], batch_gen)
        reward = _performance(self.metric, data.y_val_np, self.predictor_.proba(state, data.x_val)) - self.baseline_
        loss = _policy_loss(prob, torch.as_tensor(sel, dtype=torch.float32), reward)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return reward, p

    def _finish(self, data: _FitData) -> DVRL:
        """The data values h_phi(x, y) of the training points; warn if they collapsed."""
        self.values_ = self._dve(data.x, data.onehot, self.marginal_)
        if self.values_.std() < 1e-3:
            warnings.warn(
                f"DVRL values collapsed to about {self.values_.mean():.3f} for every point (std "
                f"{self.values_.std():.1e}); try another random_state, metric or learning_rate.",
                RuntimeWarning, stacklevel=4,  # _finish -> _fit -> fit -> the caller of fit
            )
        return self

    # ----------------------------------------------------------------- evaluation

    def _features(self, X):
        import torch

        return torch.as_tensor((X - self.mean_) / self.scale_, dtype=torch.float32)

    def _dve(self, x_t, onehot, marginal) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, x_t.shape[0], _BLOCK):
                sl = slice(s, s + _BLOCK)
                out.append(self.dve_(x_t[sl], torch.as_tensor(onehot[sl], dtype=torch.float32),
                                     torch.as_tensor(marginal[sl], dtype=torch.float32)).double().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def val_proba(self, X) -> np.ndarray:
        """p_val(x): class probabilities (float64, (n, C)) of the predictor fit on the validation set."""
        self._check_fitted()
        X = _check_features(X, "X", self.n_features_in_)
        with _threads(self.n_jobs):
            return self.predictor_.proba(self.val_state_, self._features(X))

    def value(self, X, y) -> np.ndarray:
        """DVE values (float64, (n,)) of labeled points (reference ``data_valuator``)."""
        self._check_fitted()
        X = _check_features(X, "X", self.n_features_in_)
        y = _check_labels(y, "y", X.shape[0])
        if y.size and y.max() >= self.n_classes_:
            check_labels(y, "y", _OWNER, n_classes=self.n_classes_)
        onehot = np.eye(self.n_classes_)[y]
        x_t = self._features(X)
        with _threads(self.n_jobs):
            return self._dve(x_t, onehot, marginal_information(onehot, self.predictor_.proba(self.val_state_, x_t)))

    def predict_class_values(self, X, classes=None) -> np.ndarray:
        """DVE value of each point for each candidate class c, shape (n, C) (NaN where not asked).

        The value for class c is h(x, onehot(c), |onehot(c) - p_val(x)|): the point
        valued as if it were labeled c, with the marginal information of that label.
        classes : optional bool mask (n, C) of the (point, class) pairs to compute.
        """
        self._check_fitted()
        X = _check_features(X, "X", self.n_features_in_)
        C = self.n_classes_
        if classes is not None and np.shape(classes) != (X.shape[0], C):
            raise DataError(f"classes must be a bool mask of shape ({X.shape[0]}, {C}). Got {np.shape(classes)}.")
        with _threads(self.n_jobs):
            x_t = self._features(X)
            p_val = self.predictor_.proba(self.val_state_, x_t)
            out = np.full((X.shape[0], C), np.nan)
            for c in range(C):
                rows = np.arange(X.shape[0]) if classes is None else np.flatnonzero(classes[:, c])
                if rows.size == 0:
                    continue
                onehot = np.zeros((rows.size, C))
                onehot[:, c] = 1.0
                out[rows, c] = self._dve(x_t[rows], onehot, marginal_information(onehot, p_val[rows]))
            return out

    def predict(self, X, proba, *, top_m: int | None = None, aggregate: str | None = None) -> np.ndarray:
        """Scores of unlabeled points (float64, (n,)): DVE values aggregated over the top-m
        classes of ``proba`` (n, C), like :meth:`ads.regress.ValueRegressor.predict`.

        ``top_m`` / ``aggregate`` override the constructor's for this call.
        """
        self._check_fitted()
        top_m = self.top_m if top_m is None else top_m
        aggregate = self.aggregate if aggregate is None else aggregate
        self._check_scorer_params(top_m, aggregate)
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape != (np.shape(X)[0], self.n_classes_):
            raise DataError(f"proba must have shape ({np.shape(X)[0]}, {self.n_classes_}). Got {proba.shape}.")
        top, mask = top_classes(proba, top_m)
        return aggregate_top(self.predict_class_values(X, mask), proba, top, aggregate)


def dvrl_values(X, y, X_val, y_val, n_classes: int | None = None, **params) -> np.ndarray:
    """Valuer: DVRL values (float64, (n,)) of the training points; ``params`` go to :class:`DVRL`."""
    return DVRL(**params).fit(X, y, X_val, y_val, n_classes=n_classes).values_
