"""psmem.torch: PyTorch modules whose parameters live in psmem tables.

Embedding(table)
    An nn.Module like torch.nn.Embedding whose rows are the table's: forward
    pulls the rows of the given indices (one pull of the distinct indices),
    backward pushes each distinct row's gradient (summed over its uses) into
    the table, where the table's server-side rule (sgd, adagrad, adam: see
    World.table) applies it under the key's lock.  No torch optimizer is
    needed for it (as DGL's NodeEmbedding with SparseAdagrad).  With rule
    "sum" the pushed gradient is just added: use it to collect gradients.

DenseParameters(world, module, rule=..., lr=...)
    Data-parallel dense parameters: one table holds every parameter of the
    module (flattened, in chunks of `chunk` floats).  pull() writes the
    table's values into the parameters (their storage is one flat buffer
    that the pull writes in place), push_grads() pushes the parameters'
    gradients for the table's rule, push_delta(scale) pushes
    scale * (params - params at the last pull) (rule "sum": model averaging
    when scale = 1 / num_nodes).

Both are zero-copy where the layout allows: the pulls write into torch
tensors' memory and the pushes read from it.
"""
import numpy as np
import torch

__all__ = ["Embedding", "DenseParameters"]


class _EmbeddingFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dummy, table, idx):
        flat = idx.reshape(-1).contiguous()
        uniq, inv = torch.unique(flat, return_inverse=True)
        ctx.table = table
        if uniq.numel() == flat.numel():
            # distinct indices (e.g. already torch.unique'd): one pull
            # straight into the result, one push of its gradient
            rows = torch.empty((flat.numel(), table.value_len), dtype=torch.float32)
            table.pull(flat.numpy(), rows.numpy())
            ctx.save_for_backward(flat)
            ctx.distinct = True
            return rows.reshape(*idx.shape, table.value_len)
        uniq = uniq.contiguous()
        rows = torch.empty((uniq.numel(), table.value_len), dtype=torch.float32)
        table.pull(uniq.numpy(), rows.numpy())
        ctx.save_for_backward(uniq, inv)
        ctx.distinct = False
        return rows[inv].reshape(*idx.shape, table.value_len)

    @staticmethod
    def backward(ctx, grad):
        table = ctx.table
        g = grad.reshape(-1, table.value_len).to(torch.float32)
        if ctx.distinct:
            (keys,) = ctx.saved_tensors
            rows = g.contiguous()
        else:
            keys, inv = ctx.saved_tensors
            rows = torch.zeros((keys.numel(), table.value_len), dtype=torch.float32)
            rows.index_add_(0, inv, g)  # a row used several times: its gradients summed
        table.push(keys.numpy(), rows.numpy())
        return None, None, None


class Embedding(torch.nn.Module):
    """Embedding(table): rows of a psmem table as an embedding layer.

    forward(indices) -> float32 tensor of shape indices.shape + (value_len,).
    The backward pass pushes the gradients of the rows used into the table
    (its rule applies them); the module has no torch parameters.
    """

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.num_embeddings = table.num_keys
        self.embedding_dim = table.value_len
        # Autograd calls a Function's backward only if one of its inputs
        # requires grad: this empty leaf stands for the table (it is not a
        # Parameter, so torch optimizers do not see it).
        self._dummy = torch.empty(0, requires_grad=True)

    def forward(self, indices):
        if not isinstance(indices, torch.Tensor):
            indices = torch.as_tensor(indices)
        if indices.dtype not in (torch.int64,):
            raise TypeError(f"Embedding: expected int64 indices, got {indices.dtype}")
        if torch.is_grad_enabled():
            return _EmbeddingFn.apply(self._dummy, self.table, indices)
        flat = indices.reshape(-1).contiguous()
        out = torch.empty((flat.numel(), self.embedding_dim), dtype=torch.float32)
        self.table.pull(flat.numpy(), out.numpy())
        return out.reshape(*indices.shape, self.embedding_dim)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class DenseParameters:
    """Parameters of `module` in one psmem table, for data-parallel training.

    Collective constructor (every node, same module shape): creates the table
    (rule, lr, ... as World.table), and node 0 assigns its module's current
    values as the initial ones; a barrier follows.  Then per step:

        dp.pull()            # the parameters now hold the table's values
        loss.backward()
        dp.push_grads()      # the table's rule applies the gradients

    or, for local steps over an epoch (rule "sum"):
        dp.pull(); ... local optimizer steps ...; dp.push_delta(1 / w.num_nodes)
    """

    def __init__(self, world, module, rule="sgd", lr=0.01, chunk=1024, **table_kw):
        self.world = world
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.numel = sum(p.numel() for p in self.params)
        self.chunk = chunk = max(1, min(int(chunk), 65536))
        nkeys = (self.numel + chunk - 1) // chunk
        if rule in ("sum", "assign"):
            lr = 0.0
        self.table = world.table(nkeys, chunk, rule=rule, lr=lr, **table_kw)
        self.keys = np.arange(nkeys, dtype=np.int64)
        # One flat buffer (padded to whole chunks) holds every parameter:
        # each parameter's data becomes a view of it, so pull() writes the
        # parameters in place.
        self.flat = torch.zeros(nkeys * chunk, dtype=torch.float32)
        self.grad = torch.zeros(nkeys * chunk, dtype=torch.float32)
        self.base = torch.zeros(nkeys * chunk, dtype=torch.float32)
        off = 0
        for p in self.params:
            n = p.numel()
            self.flat[off:off + n].copy_(p.data.reshape(-1))
            p.data = self.flat[off:off + n].view_as(p)
            off += n
        self._flat2 = self.flat.view(nkeys, chunk)
        if world.node_id == 0 and world.host_id == 0:
            self.table.assign(self.keys, self._flat2.numpy())
        world.barrier()

    def pull(self):
        """Writes the table's values into the parameters (and remembers
        them as the base of push_delta)."""
        self.table.pull(self.keys, self._flat2.numpy())
        self.base.copy_(self.flat)

    def push_grads(self, scale=1.0):
        """Pushes scale * the parameters' gradients (None counts as 0)."""
        off = 0
        for p in self.params:
            n = p.numel()
            if p.grad is None:
                self.grad[off:off + n].zero_()
            else:
                self.grad[off:off + n].copy_(p.grad.reshape(-1))
            off += n
        if scale != 1.0:
            self.grad.mul_(scale)
        self.table.push(self.keys, self.grad.view(-1, self.chunk).numpy())

    def push_delta(self, scale=1.0):
        """Pushes scale * (parameters - their values at the last pull)."""
        torch.sub(self.flat, self.base, out=self.grad)
        if scale != 1.0:
            self.grad.mul_(scale)
        self.table.push(self.keys, self.grad.view(-1, self.chunk).numpy())
