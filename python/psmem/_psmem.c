/*
 * _psmem.c - the CPython binding of psmem (the extension module behind the
 * `psmem` package).  It uses only the public header psmem.h.
 *
 * Objects
 *   World   one per process (ps_init); node_id, num_nodes, ... ; tables,
 *           barrier, clocks, checkpoints, finalize.
 *   Table   a ps_table of a World; pull/push (sync and async), localize,
 *           replicate, sync, assign.
 *   Handle  an asynchronous operation: it holds the Py_buffer views of its
 *           keys and values (so the arrays stay alive and cannot be
 *           resized) until wait(), or until it is collected (then it waits).
 *
 * Buffers.  Keys are 1-D C-contiguous int64/uint64 buffers; values are
 * float32, C-contiguous, of shape (n, value_len).  Anything else raises
 * TypeError (wrong type or dtype) or ValueError (shape, contiguity, read-only
 * out) naming what was expected: the binding never converts or copies.  A
 * CPU torch.Tensor (no buffer protocol of its own) is viewed through its
 * .numpy(), which shares its memory.
 *
 * The GIL.  Every call into psmem that touches the store runs with the GIL
 * released (Py_BEGIN_ALLOW_THREADS): other Python threads run meanwhile.
 * The views held for the call keep the buffers exported, so no other thread
 * can free or resize them while the store reads or writes them.
 *
 * Lifetime invariants
 *   - A Table holds a reference to its World; a Handle to its Table.
 *   - World.finalize() refuses (RuntimeError) while handles are pending
 *     (w_pending > 0) and afterwards every method of the World and of its
 *     tables raises RuntimeError instead of touching the freed world.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "psmem.h"

static PyObject *ErrorType; /* psmem.Error */

typedef struct {
	PyObject_HEAD
	ps_world *w;       /* NULL once finalized */
	Py_ssize_t pending; /* handles not waited yet (guarded by the GIL) */
} WorldObject;

typedef struct {
	PyObject_HEAD
	WorldObject *world;
	ps_table *t;
	uint64_t num_keys;
	uint32_t value_len;
} TableObject;

enum { H_PULL, H_PUSH, H_LOCALIZE, H_ASSIGN };

typedef struct {
	PyObject_HEAD
	TableObject *table;
	ps_handle h;
	int kind;
	int waited;
	Py_buffer keys, vals; /* vals.obj == NULL for localize */
	PyObject *keys_owner, *vals_owner; /* the objects passed (returned by wait) */
	PyObject *keys_tmp, *vals_tmp;     /* .numpy() views of torch tensors */
} HandleObject;

static PyTypeObject WorldType, TableType, HandleType;
static WorldObject *the_world; /* borrowed: the live World of this process */

/* ------------------------------------------------------------- errors */

/* Raises psmem.Error(code) with "what: ps_strerror(code) (code)". */
static PyObject *raise_ps(int code, const char *what)
{
	PyObject *msg = PyUnicode_FromFormat("%s: %s (%d)", what, ps_strerror(code), code);
	if (!msg)
		return NULL;
	PyObject *exc = PyObject_CallOneArg(ErrorType, msg);
	Py_DECREF(msg);
	if (!exc)
		return NULL;
	PyObject *c = PyLong_FromLong(code);
	PyObject *s = PyUnicode_FromString(ps_strerror(code));
	if (!c || !s || PyObject_SetAttrString(exc, "code", c) < 0 || PyObject_SetAttrString(exc, "strerror", s) < 0) {
		Py_XDECREF(c);
		Py_XDECREF(s);
		Py_DECREF(exc);
		return NULL;
	}
	Py_DECREF(c);
	Py_DECREF(s);
	PyErr_SetObject(ErrorType, exc);
	Py_DECREF(exc);
	return NULL;
}

static int world_alive(WorldObject *wo)
{
	if (!wo->w) {
		PyErr_SetString(PyExc_RuntimeError, "psmem: the world was finalized");
		return 0;
	}
	return 1;
}

/* ------------------------------------------------------------ buffers */

/*
 * Views obj as a buffer with strides and format; a torch.Tensor (no buffer
 * protocol) through obj.numpy(), stored in *tmp.  writable: the buffer
 * must be writable.  Returns 0, or -1 with an exception naming `what`.
 */
static int get_view(PyObject *obj, Py_buffer *v, int writable, PyObject **tmp, const char *what)
{
	*tmp = NULL;
	if (!PyObject_CheckBuffer(obj)) {
		PyObject *mod = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__module__");
		const char *m = mod && PyUnicode_Check(mod) ? PyUnicode_AsUTF8(mod) : NULL;
		int is_torch = m && (strcmp(m, "torch") == 0 || strncmp(m, "torch.", 6) == 0);
		Py_XDECREF(mod);
		PyErr_Clear();
		if (!is_torch) {
			PyErr_Format(PyExc_TypeError,
				     "%s: expected a numpy array or CPU torch tensor (buffer protocol), got %.100s", what,
				     Py_TYPE(obj)->tp_name);
			return -1;
		}
		/* Tensor.numpy() shares the tensor's memory (it raises for
		 * GPU tensors and tensors that require grad). */
		*tmp = PyObject_CallMethod(obj, "numpy", NULL);
		if (!*tmp) {
			PyObject *et, *ev, *tb;
			PyErr_Fetch(&et, &ev, &tb);
			PyObject *s = ev ? PyObject_Str(ev) : NULL;
			PyErr_Format(PyExc_TypeError, "%s: expected a CPU torch tensor viewable as numpy: %S", what,
				     s ? s : Py_None);
			Py_XDECREF(s);
			Py_XDECREF(et);
			Py_XDECREF(ev);
			Py_XDECREF(tb);
			return -1;
		}
		obj = *tmp;
	}
	if (PyObject_GetBuffer(obj, v, PyBUF_RECORDS_RO) < 0) {
		Py_CLEAR(*tmp);
		return -1;
	}
	if (writable && v->readonly) {
		PyBuffer_Release(v);
		Py_CLEAR(*tmp);
		PyErr_Format(PyExc_ValueError, "%s: expected a writable buffer, got a read-only one", what);
		return -1;
	}
	return 0;
}

static void drop_view(Py_buffer *v, PyObject **tmp)
{
	if (v->obj)
		PyBuffer_Release(v);
	v->obj = NULL;
	Py_CLEAR(*tmp);
}

/* The struct-module format without its byte-order prefix (native or
 * little-endian only: this is x86-64/aarch64 little-endian code). */
static const char *fmt_code(const Py_buffer *v)
{
	const char *f = v->format ? v->format : "B";
	if (*f == '@' || *f == '=' || *f == '<')
		f++;
	return f;
}

static void release_both(Py_buffer *a, PyObject **ta, Py_buffer *b, PyObject **tb)
{
	drop_view(a, ta);
	drop_view(b, tb);
}

/* Keys: 1-D, C-contiguous, int64 or uint64.  *n gets their count. */
static int get_keys(PyObject *obj, Py_buffer *v, PyObject **tmp, size_t *n)
{
	if (get_view(obj, v, 0, tmp, "keys") < 0)
		return -1;
	const char *f = fmt_code(v);
	int ok = v->itemsize == 8 && (strcmp(f, "q") == 0 || strcmp(f, "Q") == 0 || strcmp(f, "l") == 0 ||
				      strcmp(f, "L") == 0);
	if (!ok) {
		PyErr_Format(PyExc_TypeError, "keys: expected dtype int64 or uint64, got format '%s' (itemsize %zd)",
			     v->format ? v->format : "B", v->itemsize);
		goto fail;
	}
	if (v->ndim != 1) {
		PyErr_Format(PyExc_ValueError, "keys: expected a 1-D array, got %d dimensions", v->ndim);
		goto fail;
	}
	if (!PyBuffer_IsContiguous(v, 'C')) {
		PyErr_SetString(PyExc_ValueError, "keys: expected a C-contiguous array (use numpy.ascontiguousarray)");
		goto fail;
	}
	*n = (size_t)v->shape[0];
	return 0;
fail:
	drop_view(v, tmp);
	return -1;
}

/* Values: float32, C-contiguous, shape (n, value_len). */
static int get_values(PyObject *obj, Py_buffer *v, PyObject **tmp, int writable, size_t n, uint32_t vlen,
		      const char *what)
{
	if (get_view(obj, v, writable, tmp, what) < 0)
		return -1;
	const char *f = fmt_code(v);
	if (v->itemsize != 4 || strcmp(f, "f") != 0) {
		PyErr_Format(PyExc_TypeError, "%s: expected dtype float32, got format '%s' (itemsize %zd)", what,
			     v->format ? v->format : "B", v->itemsize);
		goto fail;
	}
	if (v->ndim != 2 || (size_t)v->shape[0] != n || (size_t)v->shape[1] != vlen) {
		char got[96] = "";
		if (v->ndim == 2)
			snprintf(got, sizeof got, "(%zd, %zd)", v->shape[0], v->shape[1]);
		else if (v->ndim == 1)
			snprintf(got, sizeof got, "(%zd,)", v->shape[0]);
		else
			snprintf(got, sizeof got, "%d dimensions", v->ndim);
		PyErr_Format(PyExc_ValueError, "%s: expected shape (%zu, %u) (len(keys), value_len), got %s", what, n,
			     vlen, got);
		goto fail;
	}
	if (!PyBuffer_IsContiguous(v, 'C')) {
		PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous array (use numpy.ascontiguousarray)",
			     what);
		goto fail;
	}
	return 0;
fail:
	drop_view(v, tmp);
	return -1;
}

/* A new float32 array of shape (n, vlen) through numpy (imported lazily:
 * only pull(keys) without out needs it). */
static PyObject *new_values(size_t n, uint32_t vlen)
{
	PyObject *np = PyImport_ImportModule("numpy");
	if (!np)
		return NULL;
	PyObject *arr = PyObject_CallMethod(np, "empty", "((nI)s)", (Py_ssize_t)n, (unsigned)vlen, "float32");
	Py_DECREF(np);
	return arr;
}

/* -------------------------------------------------------------- World */

static PyObject *world_new_obj(ps_world *w)
{
	WorldObject *wo = PyObject_New(WorldObject, &WorldType);
	if (!wo)
		return NULL;
	wo->w = w;
	wo->pending = 0;
	return (PyObject *)wo;
}

static PyObject *mod_init(PyObject *self, PyObject *args, PyObject *kw)
{
	(void)self;
	static char *kwlist[] = {"threads", NULL};
	PyObject *threads_obj = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:init", kwlist, &threads_obj))
		return NULL;
	int threads = 0;
	if (threads_obj != Py_None) {
		long t = PyLong_AsLong(threads_obj);
		if (t == -1 && PyErr_Occurred())
			return NULL;
		if (t <= 0 || t > 4096) {
			PyErr_Format(PyExc_ValueError, "threads: expected None or 1 .. 4096, got %ld", t);
			return NULL;
		}
		threads = (int)t;
	}
	if (the_world && the_world->w) {
		Py_INCREF(the_world);
		return (PyObject *)the_world;
	}
	int err = 0;
	ps_world *w;
	Py_BEGIN_ALLOW_THREADS
	w = ps_init_threads(threads, &err);
	Py_END_ALLOW_THREADS
	if (!w)
		return raise_ps(err, "psmem.init");
	PyObject *wo = world_new_obj(w);
	if (!wo) {
		Py_BEGIN_ALLOW_THREADS
		ps_finalize(w);
		Py_END_ALLOW_THREADS
		return NULL;
	}
	the_world = (WorldObject *)wo;
	return wo;
}

static void world_dealloc(WorldObject *wo)
{
	/* The world stays joined until finalize() or process exit (the
	 * package finalizes it at exit): dropping the last reference does
	 * not leave the job behind the program's back. */
	if (the_world == wo)
		the_world = NULL;
	if (wo->w) {
		ps_world *w = wo->w;
		wo->w = NULL;
		Py_BEGIN_ALLOW_THREADS
		ps_finalize(w);
		Py_END_ALLOW_THREADS
	}
	PyObject_Free(wo);
}

#define WORLD_INT_GETTER(name, fn)                                  \
	static PyObject *world_get_##name(WorldObject *wo, void *c) \
	{                                                           \
		(void)c;                                            \
		if (!world_alive(wo))                               \
			return NULL;                                \
		return PyLong_FromLong(fn(wo->w));                  \
	}
WORLD_INT_GETTER(node_id, ps_node_id)
WORLD_INT_GETTER(num_nodes, ps_num_nodes)
WORLD_INT_GETTER(num_threads, ps_num_threads)
WORLD_INT_GETTER(host_id, ps_host_id)
WORLD_INT_GETTER(num_hosts, ps_num_hosts)
WORLD_INT_GETTER(restarted, ps_restarted)

static PyObject *world_get_segment(WorldObject *wo, void *c)
{
	(void)c;
	if (!world_alive(wo))
		return NULL;
	return PyUnicode_FromString(ps_segment_name(wo->w));
}

static PyObject *world_get_finalized(WorldObject *wo, void *c)
{
	(void)c;
	return PyBool_FromLong(wo->w == NULL);
}

static int parse_choice(PyObject *o, const char *what, const char *const *names, int count, int *out)
{
	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s: expected a string, got %.100s", what, Py_TYPE(o)->tp_name);
		return -1;
	}
	for (int i = 0; i < count; i++)
		if (PyUnicode_CompareWithASCIIString(o, names[i]) == 0) {
			*out = i;
			return 0;
		}
	PyObject *all = PyUnicode_FromString("");
	for (int i = 0; all && i < count; i++) {
		PyObject *s = PyUnicode_FromFormat("%U%s\"%s\"", all, i ? ", " : "", names[i]);
		Py_SETREF(all, s);
	}
	if (all)
		PyErr_Format(PyExc_ValueError, "%s: expected one of %U, got %R", what, all, o);
	Py_XDECREF(all);
	return -1;
}

static PyObject *world_table(WorldObject *wo, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"num_keys", "value_len", "init", "init_a", "seed", "rule", "lr", "hogwild",
				 "placement", "eps", "betas", "repl_max", "repl_rate", "transient", NULL};
	long long num_keys = 0;
	unsigned long long seed = 1;
	long value_len = 0;
	PyObject *init_o = NULL, *rule_o = NULL, *place_o = NULL, *eps_o = Py_None, *betas_o = Py_None;
	double init_a = 0, lr = 0, repl_rate = 0;
	int hogwild = 0, transient = 0;
	unsigned long repl_max = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "Ll|UdKUdpUOOkdp:table", kwlist, &num_keys, &value_len, &init_o,
					 &init_a, &seed, &rule_o, &lr, &hogwild, &place_o, &eps_o, &betas_o,
					 &repl_max, &repl_rate, &transient))
		return NULL;
	if (!world_alive(wo))
		return NULL;
	if (value_len < 1 || value_len > 65536) {
		PyErr_Format(PyExc_ValueError, "value_len: expected 1 .. 65536, got %ld", value_len);
		return NULL;
	}
	if (num_keys < 1) {
		PyErr_Format(PyExc_ValueError, "num_keys: expected >= 1, got %lld", num_keys);
		return NULL;
	}
	static const char *const inits[] = {"zeros", "constant", "uniform"};
	static const char *const rules[] = {"sum", "assign", "sgd", "adagrad", "adam"};
	static const char *const places[] = {"range", "hash"};
	int init = 0, rule = 0, place = 0;
	if (init_o && parse_choice(init_o, "init", inits, 3, &init) < 0)
		return NULL;
	if (rule_o && parse_choice(rule_o, "rule", rules, 5, &rule) < 0)
		return NULL;
	if (place_o && parse_choice(place_o, "placement", places, 2, &place) < 0)
		return NULL;

	ps_table_opts o;
	ps_table_opts_init(&o, (uint64_t)num_keys, (uint32_t)value_len);
	o.init = init == 0 ? PS_INIT_ZERO : init == 1 ? PS_INIT_CONST : PS_INIT_UNIFORM;
	o.init_a = (float)init_a;
	o.seed = (uint64_t)seed;
	o.placement = place ? PS_PLACE_HASH : PS_PLACE_RANGE;
	o.flags = (hogwild ? PS_HOGWILD : 0) | (transient ? PS_TRANSIENT : 0);
	o.repl_max = (uint32_t)repl_max;
	o.repl_rate = repl_rate;
	static const uint32_t rule_ids[] = {PS_RULE_SUM, PS_RULE_ASSIGN, PS_RULE_SGD, PS_RULE_ADAGRAD, PS_RULE_ADAM};
	o.rule = rule_ids[rule];
	double eps = 0, b1 = 0.9, b2 = 0.999;
	if (eps_o != Py_None) {
		eps = PyFloat_AsDouble(eps_o);
		if (eps == -1 && PyErr_Occurred())
			return NULL;
	} else
		eps = rule == 3 ? 1e-10 : 1e-8;
	if (betas_o != Py_None && !PyArg_ParseTuple(betas_o, "dd;betas: expected a pair of floats", &b1, &b2))
		return NULL;
	if (rule >= 2 && !(lr > 0)) {
		PyErr_Format(PyExc_ValueError, "lr: expected > 0 for rule \"%s\", got %g", rules[rule], lr);
		return NULL;
	}
	if (rule < 2 && lr != 0) {
		PyErr_Format(PyExc_ValueError, "lr: rule \"%s\" takes no learning rate (got %g)", rules[rule], lr);
		return NULL;
	}
	if (rule == 2) {
		o.rule_params[0] = (float)lr;
	} else if (rule == 3) {
		o.rule_params[0] = (float)lr;
		o.rule_params[1] = (float)eps;
	} else if (rule == 4) {
		o.rule_params[0] = (float)lr;
		o.rule_params[1] = (float)b1;
		o.rule_params[2] = (float)b2;
		o.rule_params[3] = (float)eps;
	}
	TableObject *to = PyObject_New(TableObject, &TableType);
	if (!to)
		return NULL;
	int err = 0;
	ps_table *t;
	Py_BEGIN_ALLOW_THREADS
	t = ps_table_create(wo->w, &o, &err);
	Py_END_ALLOW_THREADS
	if (!t) {
		to->world = NULL;
		to->t = NULL;
		Py_DECREF(to);
		return raise_ps(err, "table");
	}
	Py_INCREF(wo);
	to->world = wo;
	to->t = t;
	to->num_keys = ps_table_num_keys(t);
	to->value_len = ps_table_value_len(t);
	return (PyObject *)to;
}

static PyObject *world_barrier(WorldObject *wo, PyObject *unused)
{
	(void)unused;
	if (!world_alive(wo))
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_barrier(wo->w);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_ps(rc, "barrier");
	Py_RETURN_NONE;
}

static PyObject *world_set_consistency(WorldObject *wo, PyObject *args)
{
	PyObject *mode_o;
	int staleness = 0;
	if (!PyArg_ParseTuple(args, "O|i:set_consistency", &mode_o, &staleness))
		return NULL;
	if (!world_alive(wo))
		return NULL;
	static const char *const modes[] = {"bsp", "ssp", "asp"};
	int mode;
	if (parse_choice(mode_o, "mode", modes, 3, &mode) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_set_consistency(wo->w, mode == 0 ? PS_BSP : mode == 1 ? PS_SSP : PS_ASP, staleness);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_ps(rc, "set_consistency");
	Py_RETURN_NONE;
}

static PyObject *world_clock(WorldObject *wo, PyObject *unused)
{
	(void)unused;
	if (!world_alive(wo))
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_clock(wo->w);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_ps(rc, "clock");
	Py_RETURN_NONE;
}

static PyObject *world_checkpoint(WorldObject *wo, PyObject *args)
{
	PyObject *path_o;
	Py_buffer meta = {0};
	if (!PyArg_ParseTuple(args, "O&|y*:checkpoint", PyUnicode_FSConverter, &path_o, &meta))
		return NULL;
	if (!world_alive(wo)) {
		Py_DECREF(path_o);
		if (meta.obj)
			PyBuffer_Release(&meta);
		return NULL;
	}
	int rc;
	const char *path = PyBytes_AS_STRING(path_o);
	Py_BEGIN_ALLOW_THREADS
	rc = ps_checkpoint_meta(wo->w, path, meta.obj ? meta.buf : NULL, meta.obj ? (size_t)meta.len : 0);
	Py_END_ALLOW_THREADS
	if (meta.obj)
		PyBuffer_Release(&meta);
	Py_DECREF(path_o);
	if (rc < 0) {
		const char *why = ps_checkpoint_error(wo->w);
		return raise_ps(rc, *why ? why : "checkpoint");
	}
	Py_RETURN_NONE;
}

static PyObject *world_restore(WorldObject *wo, PyObject *args)
{
	PyObject *path_o = NULL;
	if (!PyArg_ParseTuple(args, "|O&:restore", PyUnicode_FSConverter, &path_o))
		return NULL;
	if (!world_alive(wo)) {
		Py_XDECREF(path_o);
		return NULL;
	}
	int rc;
	const char *path = path_o ? PyBytes_AS_STRING(path_o) : NULL;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_restore(wo->w, path);
	Py_END_ALLOW_THREADS
	Py_XDECREF(path_o);
	if (rc < 0) {
		const char *why = ps_checkpoint_error(wo->w);
		return raise_ps(rc, *why ? why : "restore");
	}
	return PyLong_FromLong(rc);
}

static PyObject *world_finalize(WorldObject *wo, PyObject *unused)
{
	(void)unused;
	if (!wo->w)
		Py_RETURN_NONE; /* idempotent */
	if (wo->pending > 0) {
		PyErr_Format(PyExc_RuntimeError, "finalize: %zd asynchronous handle(s) not waited yet", wo->pending);
		return NULL;
	}
	ps_world *w = wo->w;
	wo->w = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_finalize(w);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_ps(rc, "finalize");
	Py_RETURN_NONE;
}

static PyMethodDef world_methods[] = {
	{"table", (PyCFunction)(void (*)(void))world_table, METH_VARARGS | METH_KEYWORDS,
	 "table(num_keys, value_len, init='zeros', init_a=0.0, seed=1, rule='sum', lr=0.0, hogwild=False,\n"
	 "      placement='range', eps=None, betas=None, repl_max=0, repl_rate=0.0, transient=False)\n"
	 "Creates a table (collective: every node, same arguments, same order)."},
	{"barrier", (PyCFunction)world_barrier, METH_NOARGS, "Waits until every worker of every node arrives."},
	{"set_consistency", (PyCFunction)world_set_consistency, METH_VARARGS,
	 "set_consistency(mode, staleness=0): mode 'bsp', 'ssp' or 'asp' (every node, before clock())."},
	{"clock", (PyCFunction)world_clock, METH_NOARGS, "Ends this worker's clock and waits for the bound."},
	{"checkpoint", (PyCFunction)world_checkpoint, METH_VARARGS,
	 "checkpoint(path, meta=b''): writes every table to path (collective)."},
	{"restore", (PyCFunction)world_restore, METH_VARARGS,
	 "restore(path=None): assigns every table from a checkpoint (collective); returns the tables restored."},
	{"finalize", (PyCFunction)world_finalize, METH_NOARGS, "Leaves the job (idempotent)."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef world_getset[] = {
	{"node_id", (getter)world_get_node_id, NULL, "this node, 0 .. num_nodes-1", NULL},
	{"num_nodes", (getter)world_get_num_nodes, NULL, "nodes of this host", NULL},
	{"num_threads", (getter)world_get_num_threads, NULL, "worker threads per node", NULL},
	{"host_id", (getter)world_get_host_id, NULL, "this host", NULL},
	{"num_hosts", (getter)world_get_num_hosts, NULL, "hosts of the job", NULL},
	{"restarted", (getter)world_get_restarted, NULL, "True if this process replaced a dead node", NULL},
	{"segment", (getter)world_get_segment, NULL, "name of the job's shared-memory segment", NULL},
	{"finalized", (getter)world_get_finalized, NULL, "True after finalize()", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WorldType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "psmem.World",
	.tp_basicsize = sizeof(WorldObject),
	.tp_dealloc = (destructor)world_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "The psmem job this process belongs to (psmem.init()).",
	.tp_methods = world_methods,
	.tp_getset = world_getset,
};

/* -------------------------------------------------------------- Table */

static void table_dealloc(TableObject *to)
{
	Py_XDECREF(to->world);
	PyObject_Free(to);
}

static int table_alive(TableObject *to)
{
	return world_alive(to->world);
}

static PyObject *table_get_num_keys(TableObject *to, void *c)
{
	(void)c;
	return PyLong_FromUnsignedLongLong(to->num_keys);
}

static PyObject *table_get_value_len(TableObject *to, void *c)
{
	(void)c;
	return PyLong_FromUnsignedLong(to->value_len);
}

static PyObject *table_get_id(TableObject *to, void *c)
{
	(void)c;
	return PyLong_FromLong(ps_table_id(to->t));
}

/*
 * The body of pull / push / assign / localize, sync or async.  op: H_PULL,
 * H_PUSH, H_LOCALIZE, or H_ASSIGN (sync only).
 */
static PyObject *table_op(TableObject *to, PyObject *keys_o, PyObject *vals_o, int op, int async)
{
	if (!table_alive(to))
		return NULL;
	/* The views are taken where they will be released: in the handle for
	 * an asynchronous call (a Py_buffer is not moved once filled in). */
	HandleObject *ho = NULL;
	Py_buffer kv_local = {0}, vv_local = {0};
	PyObject *ktmp_local = NULL, *vtmp_local = NULL, *alloc = NULL;
	Py_buffer *kv = &kv_local, *vv = &vv_local;
	PyObject **ktmp = &ktmp_local, **vtmp = &vtmp_local;
	if (async) {
		ho = PyObject_New(HandleObject, &HandleType);
		if (!ho)
			return NULL;
		ho->table = NULL;
		ho->h = NULL;
		ho->kind = op;
		ho->waited = 1; /* nothing to wait for until launched */
		memset(&ho->keys, 0, sizeof ho->keys);
		memset(&ho->vals, 0, sizeof ho->vals);
		ho->keys_owner = ho->vals_owner = ho->keys_tmp = ho->vals_tmp = NULL;
		kv = &ho->keys;
		vv = &ho->vals;
		ktmp = &ho->keys_tmp;
		vtmp = &ho->vals_tmp;
	}
	size_t n;
	if (get_keys(keys_o, kv, ktmp, &n) < 0)
		goto fail;
	if (op != H_LOCALIZE) {
		if (op == H_PULL && vals_o == Py_None) {
			alloc = new_values(n, to->value_len);
			if (!alloc)
				goto fail;
			vals_o = alloc;
		}
		const char *what = op == H_PULL ? "out" : op == H_PUSH ? "updates" : "values";
		if (get_values(vals_o, vv, vtmp, op == H_PULL, n, to->value_len, what) < 0)
			goto fail;
	}
	const ps_key *keys = kv->buf;
	float *vals = vv->buf;
	if (!async) {
		int rc;
		Py_BEGIN_ALLOW_THREADS
		if (op == H_PULL)
			rc = ps_pull_sync(to->t, keys, n, vals);
		else if (op == H_PUSH)
			rc = ps_push_sync(to->t, keys, n, vals);
		else if (op == H_LOCALIZE)
			rc = ps_localize_sync(to->t, keys, n);
		else
			rc = ps_assign_sync(to->t, keys, n, vals);
		Py_END_ALLOW_THREADS
		release_both(kv, ktmp, vv, vtmp);
		if (rc < 0) {
			Py_XDECREF(alloc);
			static const char *const names[] = {"pull", "push", "localize", "assign"};
			return raise_ps(rc, names[op]);
		}
		if (op == H_PULL) {
			if (alloc)
				return alloc;
			Py_INCREF(vals_o);
			return vals_o;
		}
		Py_RETURN_NONE;
	}
	ps_handle h;
	Py_BEGIN_ALLOW_THREADS
	if (op == H_PULL)
		h = ps_pull(to->t, keys, n, vals);
	else if (op == H_PUSH)
		h = ps_push(to->t, keys, n, vals);
	else
		h = ps_localize(to->t, keys, n);
	Py_END_ALLOW_THREADS
	Py_INCREF(to);
	ho->table = to;
	ho->h = h;
	ho->waited = 0;
	Py_INCREF(keys_o);
	ho->keys_owner = keys_o;
	if (op != H_LOCALIZE) {
		Py_INCREF(vals_o);
		ho->vals_owner = vals_o;
	}
	Py_XDECREF(alloc); /* the handle holds it now */
	to->world->pending++;
	return (PyObject *)ho;
fail:
	release_both(kv, ktmp, vv, vtmp);
	Py_XDECREF(alloc);
	Py_XDECREF(ho);
	return NULL;
}

/* The keyword methods pull, push, assign, pull_async and push_async: keys
 * and one array, named as op says; fmt is the PyArg format ("O|O:name" where
 * the array may be left out, None then). */
static PyObject *table_kw_op(TableObject *to, PyObject *args, PyObject *kw, const char *fmt, int op, int async)
{
	static char *kw_out[] = {"keys", "out", NULL};
	static char *kw_updates[] = {"keys", "updates", NULL};
	static char *kw_values[] = {"keys", "values", NULL};
	char **kwlist = op == H_PULL ? kw_out : op == H_PUSH ? kw_updates : kw_values;
	PyObject *keys, *arr = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, &keys, &arr))
		return NULL;
	return table_op(to, keys, arr, op, async);
}

static PyObject *table_pull(TableObject *to, PyObject *args, PyObject *kw)
{
	return table_kw_op(to, args, kw, "O|O:pull", H_PULL, 0);
}

static PyObject *table_push(TableObject *to, PyObject *args, PyObject *kw)
{
	return table_kw_op(to, args, kw, "OO:push", H_PUSH, 0);
}

static PyObject *table_assign(TableObject *to, PyObject *args, PyObject *kw)
{
	return table_kw_op(to, args, kw, "OO:assign", H_ASSIGN, 0);
}

static PyObject *table_pull_async(TableObject *to, PyObject *args, PyObject *kw)
{
	return table_kw_op(to, args, kw, "O|O:pull_async", H_PULL, 1);
}

static PyObject *table_push_async(TableObject *to, PyObject *args, PyObject *kw)
{
	return table_kw_op(to, args, kw, "OO:push_async", H_PUSH, 1);
}

static PyObject *table_localize(TableObject *to, PyObject *keys)
{
	return table_op(to, keys, NULL, H_LOCALIZE, 1);
}

static PyObject *table_keys_call(TableObject *to, PyObject *keys_o, int unrep)
{
	if (!table_alive(to))
		return NULL;
	Py_buffer kv = {0};
	PyObject *ktmp = NULL;
	size_t n;
	if (get_keys(keys_o, &kv, &ktmp, &n) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = unrep ? ps_unreplicate(to->t, kv.buf, n) : ps_replicate(to->t, kv.buf, n);
	Py_END_ALLOW_THREADS
	drop_view(&kv, &ktmp);
	if (rc < 0)
		return raise_ps(rc, unrep ? "unreplicate" : "replicate");
	return PyLong_FromLong(rc);
}

static PyObject *table_replicate(TableObject *to, PyObject *keys)
{
	return table_keys_call(to, keys, 0);
}

static PyObject *table_unreplicate(TableObject *to, PyObject *keys)
{
	return table_keys_call(to, keys, 1);
}

static PyObject *table_sync(TableObject *to, PyObject *unused)
{
	(void)unused;
	if (!table_alive(to))
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_sync(to->t);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_ps(rc, "sync");
	Py_RETURN_NONE;
}

static PyObject *table_owner(TableObject *to, PyObject *arg)
{
	if (!table_alive(to))
		return NULL;
	unsigned long long k = PyLong_AsUnsignedLongLong(arg);
	if (k == (unsigned long long)-1 && PyErr_Occurred())
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_owner(to->t, (ps_key)k);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return raise_ps(rc, "owner");
	return PyLong_FromLong(rc);
}

static PyMethodDef table_methods[] = {
	{"pull", (PyCFunction)(void (*)(void))table_pull, METH_VARARGS | METH_KEYWORDS,
	 "pull(keys, out=None) -> out: the rows of keys (int64/uint64, 1-D) written into out\n"
	 "(float32, C-contiguous, shape (len(keys), value_len); allocated when None)."},
	{"push", (PyCFunction)(void (*)(void))table_push, METH_VARARGS | METH_KEYWORDS,
	 "push(keys, updates): applies updates (float32, (len(keys), value_len)) with the table's rule."},
	{"assign", (PyCFunction)(void (*)(void))table_assign, METH_VARARGS | METH_KEYWORDS,
	 "assign(keys, values): stores values as they are and resets the rule's state of those keys."},
	{"pull_async", (PyCFunction)(void (*)(void))table_pull_async, METH_VARARGS | METH_KEYWORDS,
	 "pull_async(keys, out) -> Handle; wait() returns out."},
	{"push_async", (PyCFunction)(void (*)(void))table_push_async, METH_VARARGS | METH_KEYWORDS,
	 "push_async(keys, updates) -> Handle."},
	{"localize", (PyCFunction)table_localize, METH_O,
	 "localize(keys) -> Handle: moves the keys to this node (in the background)."},
	{"replicate", (PyCFunction)table_replicate, METH_O,
	 "replicate(keys) -> number newly replicated (table made with repl_max > 0)."},
	{"unreplicate", (PyCFunction)table_unreplicate, METH_O, "unreplicate(keys) -> number turned back."},
	{"sync", (PyCFunction)table_sync, METH_NOARGS, "A replica sync round of this node."},
	{"owner", (PyCFunction)table_owner, METH_O, "owner(key) -> node holding key now."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef table_getset[] = {
	{"num_keys", (getter)table_get_num_keys, NULL, "keys 0 .. num_keys-1", NULL},
	{"value_len", (getter)table_get_value_len, NULL, "floats per key", NULL},
	{"id", (getter)table_get_id, NULL, "the table's id in the job", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TableType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "psmem.Table",
	.tp_basicsize = sizeof(TableObject),
	.tp_dealloc = (destructor)table_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "A psmem table (World.table()).",
	.tp_methods = table_methods,
	.tp_getset = table_getset,
};

/* ------------------------------------------------------------- Handle */

/* Waits (GIL released) and drops the buffers; returns ps_wait's code. */
static int handle_finish(HandleObject *ho)
{
	int rc;
	ps_handle h = ho->h;
	ho->waited = 1;
	Py_BEGIN_ALLOW_THREADS
	rc = ps_wait(h);
	Py_END_ALLOW_THREADS
	release_both(&ho->keys, &ho->keys_tmp, &ho->vals, &ho->vals_tmp);
	ho->table->world->pending--;
	return rc;
}

static PyObject *handle_wait(HandleObject *ho, PyObject *unused)
{
	(void)unused;
	if (ho->waited) {
		PyErr_SetString(PyExc_RuntimeError, "wait: this handle was already waited");
		return NULL;
	}
	int rc = handle_finish(ho);
	PyObject *ret = ho->kind == H_PULL ? ho->vals_owner : Py_None;
	Py_INCREF(ret);
	Py_CLEAR(ho->keys_owner);
	Py_CLEAR(ho->vals_owner);
	if (rc < 0) {
		Py_DECREF(ret);
		static const char *const names[] = {"pull", "push", "localize"};
		return raise_ps(rc, names[ho->kind]);
	}
	return ret;
}

static PyObject *handle_get_done(HandleObject *ho, void *c)
{
	(void)c;
	return PyBool_FromLong(ho->waited);
}

static void handle_dealloc(HandleObject *ho)
{
	/* Every handle is waited exactly once: a dropped one now.  Its
	 * buffers are released only after that. */
	if (!ho->waited)
		(void)handle_finish(ho);
	Py_XDECREF(ho->keys_owner);
	Py_XDECREF(ho->vals_owner);
	Py_XDECREF(ho->table);
	PyObject_Free(ho);
}

static PyMethodDef handle_methods[] = {
	{"wait", (PyCFunction)handle_wait, METH_NOARGS,
	 "Completes the operation; returns out for pull_async, else None.  Once only."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
	{"waited", (getter)handle_get_done, NULL, "True once wait() was called", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject HandleType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "psmem.Handle",
	.tp_basicsize = sizeof(HandleObject),
	.tp_dealloc = (destructor)handle_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "An asynchronous psmem operation; wait() it once.",
	.tp_methods = handle_methods,
	.tp_getset = handle_getset,
};

/* ------------------------------------------------------------- module */

static PyObject *mod_strerror(PyObject *self, PyObject *arg)
{
	(void)self;
	long code = PyLong_AsLong(arg);
	if (code == -1 && PyErr_Occurred())
		return NULL;
	return PyUnicode_FromString(ps_strerror((int)code));
}

static PyMethodDef mod_methods[] = {
	{"init", (PyCFunction)(void (*)(void))mod_init, METH_VARARGS | METH_KEYWORDS,
	 "init(threads=None) -> World: joins the psrun job, or makes a one-node job."},
	{"strerror", mod_strerror, METH_O, "strerror(code) -> psmem's name of a return code."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
	PyModuleDef_HEAD_INIT, .m_name = "psmem._psmem",
	.m_doc = "psmem's C extension (use the psmem package).", .m_size = -1, .m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__psmem(void)
{
	if (PyType_Ready(&WorldType) < 0 || PyType_Ready(&TableType) < 0 || PyType_Ready(&HandleType) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&moddef);
	if (!m)
		return NULL;
	ErrorType = PyErr_NewExceptionWithDoc("psmem.Error",
					      "A psmem call failed: .code is the negative return code, .strerror "
					      "its ps_strerror text.",
					      PyExc_RuntimeError, NULL);
	if (!ErrorType || PyModule_AddObjectRef(m, "Error", ErrorType) < 0)
		goto fail;
	if (PyModule_AddObjectRef(m, "World", (PyObject *)&WorldType) < 0 ||
	    PyModule_AddObjectRef(m, "Table", (PyObject *)&TableType) < 0 ||
	    PyModule_AddObjectRef(m, "Handle", (PyObject *)&HandleType) < 0)
		goto fail;
	static const struct {
		const char *name;
		int code;
	} codes[] = {
		{"EKEY", PS_EKEY},         {"ETABLE", PS_ETABLE},       {"EFULL", PS_EFULL},
		{"ENOSEG", PS_ENOSEG},     {"EMISMATCH", PS_EMISMATCH}, {"EDEAD", PS_EDEAD},
		{"ETOOMANY", PS_ETOOMANY}, {"ENOMEMSEG", PS_ENOMEMSEG}, {"EHANDLE", PS_EHANDLE},
		{"ERCAP", PS_ERCAP},       {"ERULE", PS_ERULE},         {"EHOGWILD", PS_EHOGWILD},
		{"ECKPT", PS_ECKPT},       {"ESHAPE", PS_ESHAPE},       {"EHOSTDOWN", PS_EHOSTDOWN},
	};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (PyModule_AddIntConstant(m, codes[i].name, codes[i].code) < 0)
			goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
