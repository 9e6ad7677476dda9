/* Compiled twins of hot functions in tidewire.protocol.
 *
 * Each function here has a pure-Python twin with the same signature; see
 * tidewire/protocol/mask.py. TIDEWIRE_NO_SPEEDUPS=1 selects the twins.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* XOR n bytes of in with the 4-byte mask m, starting at mask index phase, into out. */
static void
xor_mask_nogil(unsigned char *out, const unsigned char *in, Py_ssize_t n,
               const unsigned char *m, Py_ssize_t phase)
{
    unsigned char r[4];
    for (int k = 0; k < 4; k++)
        r[k] = m[(phase + k) & 3];
    uint32_t m32;
    memcpy(&m32, r, 4);
    uint64_t m64 = ((uint64_t)m32 << 32) | m32;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, in + i, 8);
        w ^= m64;
        memcpy(out + i, &w, 8);
    }
    for (; i < n; i++)
        out[i] = in[i] ^ r[i & 3];
}

/* The same, called with the GIL held; it is released for large payloads, so
 * that threads may mask in parallel. */
static void
xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t n,
         const unsigned char *m, Py_ssize_t phase)
{
    if (n >= 65536) {
        Py_BEGIN_ALLOW_THREADS
        xor_mask_nogil(out, in, n, m, phase);
        Py_END_ALLOW_THREADS
    } else {
        xor_mask_nogil(out, in, n, m, phase);
    }
}

/* apply_mask(data, mask) -> bytes: XOR data with the repeating 4-byte mask. */
static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask;
    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &mask))
        return NULL;
    PyObject *result = NULL;
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    Py_ssize_t n = data.len;
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL)
        goto done;
    const unsigned char *in = (const unsigned char *)data.buf;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    xor_mask(out, in, n, (const unsigned char *)mask.buf, 0);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

/* copy_unmasked(data, start, n, mask, phase) -> bytes: data[start:start + n],
 * XORed with the 4-byte mask from mask index phase % 4, or copied as it is when
 * mask is None. One call and one allocation for what a slice, bytes() and
 * apply_mask() would do in three. */
static PyObject *
copy_unmasked(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "copy_unmasked() takes 5 arguments");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t phase = PyLong_AsSsize_t(args[4]);
    if (phase == -1 && PyErr_Occurred())
        return NULL;
    PyObject *mask = args[3];
    if (mask != Py_None && (!PyBytes_Check(mask) || PyBytes_GET_SIZE(mask) != 4)) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes or None");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    if (start < 0 || n < 0 || n > data.len - start) {
        PyErr_SetString(PyExc_ValueError, "slice beyond the data");
        goto done;
    }
    const unsigned char *in = (const unsigned char *)data.buf + start;
    if (mask == Py_None) {
        result = PyBytes_FromStringAndSize((const char *)in, n);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL)
        goto done;
    xor_mask((unsigned char *)PyBytes_AS_STRING(result), in, n,
             (const unsigned char *)PyBytes_AS_STRING(mask), phase & 3);
done:
    PyBuffer_Release(&data);
    return result;
}

/* Assembly(size): a message of known size, filled piece by piece in order, then
 * taken as bytes without a copy. The bytes object stays private until take(). */
typedef struct {
    PyObject_HEAD
    PyObject *data; /* bytes of the final size, or NULL once taken */
    Py_ssize_t size;
    Py_ssize_t filled;
} Assembly;

static PyObject *
assembly_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t size;
    static char *kwlist[] = {"size", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:Assembly", kwlist, &size))
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    Assembly *self = (Assembly *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->data = PyBytes_FromStringAndSize(NULL, size);
    if (self->data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->size = size;
    self->filled = 0;
    return (PyObject *)self;
}

static void
assembly_dealloc(Assembly *self)
{
    Py_XDECREF(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* put(piece, mask=None): append piece, unmasked with the 4-byte mask (from the
 * mask byte at the fill position % 4) when given. */
static PyObject *
assembly_put(Assembly *self, PyObject *args)
{
    Py_buffer piece;
    PyObject *mask = Py_None;
    if (!PyArg_ParseTuple(args, "y*|O:put", &piece, &mask))
        return NULL;
    PyObject *result = NULL;
    if (self->data == NULL) {
        PyErr_SetString(PyExc_ValueError, "message already taken");
        goto done;
    }
    if (piece.len > self->size - self->filled) {
        PyErr_SetString(PyExc_ValueError, "piece beyond the message's size");
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(self->data) + self->filled;
    Py_ssize_t n = piece.len;
    if (mask == Py_None) {
        memcpy(out, piece.buf, n);
    } else {
        if (!PyBytes_Check(mask) || PyBytes_GET_SIZE(mask) != 4) {
            PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
            goto done;
        }
        const unsigned char *m = (const unsigned char *)PyBytes_AS_STRING(mask);
        xor_mask(out, (const unsigned char *)piece.buf, n, m, self->filled);
    }
    self->filled += n;
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&piece);
    return result;
}

/* take() -> bytes: the message, once it is complete; the assembly is empty afterwards. */
static PyObject *
assembly_take(Assembly *self, PyObject *unused)
{
    if (self->data == NULL) {
        PyErr_SetString(PyExc_ValueError, "message already taken");
        return NULL;
    }
    if (self->filled != self->size) {
        PyErr_SetString(PyExc_ValueError, "message not complete");
        return NULL;
    }
    PyObject *data = self->data;
    self->data = NULL;
    return data;
}

/* The buffer protocol: the part not filled yet, writable, so that a socket can
 * be read straight into the message. The export holds a reference to the bytes,
 * which stay valid even if take() hands them out before the export ends. */
static int
assembly_getbuffer(Assembly *self, Py_buffer *view, int flags)
{
    if (self->data == NULL) {
        PyErr_SetString(PyExc_BufferError, "message already taken");
        view->obj = NULL;
        return -1;
    }
    char *start = PyBytes_AS_STRING(self->data) + self->filled;
    if (PyBuffer_FillInfo(view, (PyObject *)self, start, self->size - self->filled, 0, flags) < 0)
        return -1;
    Py_INCREF(self->data);
    view->internal = self->data;
    return 0;
}

static void
assembly_releasebuffer(Assembly *self, Py_buffer *view)
{
    Py_XDECREF((PyObject *)view->internal);
}

static PyBufferProcs assembly_as_buffer = {
    (getbufferproc)assembly_getbuffer,
    (releasebufferproc)assembly_releasebuffer,
};

/* space() -> memoryview: where the next bytes may be written in place. */
static PyObject *
assembly_space(Assembly *self, PyObject *unused)
{
    if (self->data == NULL) {
        PyErr_SetString(PyExc_ValueError, "message already taken");
        return NULL;
    }
    return PyMemoryView_FromObject((PyObject *)self);
}

/* filled(n, mask=None): the next n bytes were written through space(); unmask
 * them where they are. */
static PyObject *
assembly_filled(Assembly *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "filled() takes 1 or 2 arguments");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[0]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    PyObject *mask = nargs == 2 ? args[1] : Py_None;
    if (self->data == NULL) {
        PyErr_SetString(PyExc_ValueError, "message already taken");
        return NULL;
    }
    if (n < 0 || n > self->size - self->filled) {
        PyErr_SetString(PyExc_ValueError, "piece beyond the message's size");
        return NULL;
    }
    if (mask != Py_None) {
        if (!PyBytes_Check(mask) || PyBytes_GET_SIZE(mask) != 4) {
            PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
            return NULL;
        }
        unsigned char *at = (unsigned char *)PyBytes_AS_STRING(self->data) + self->filled;
        xor_mask(at, at, n, (const unsigned char *)PyBytes_AS_STRING(mask), self->filled);
    }
    self->filled += n;
    Py_RETURN_NONE;
}

static PyMethodDef assembly_methods[] = {
    {"put", (PyCFunction)assembly_put, METH_VARARGS,
     "put(piece, mask=None)\n\nAppend piece, unmasked with mask if given."},
    {"space", (PyCFunction)assembly_space, METH_NOARGS,
     "space() -> memoryview\n\nThe part not filled yet, writable."},
    {"filled", (PyCFunction)(void (*)(void))assembly_filled, METH_FASTCALL,
     "filled(n, mask=None)\n\nThe next n bytes were written through space(); unmask them."},
    {"take", (PyCFunction)assembly_take, METH_NOARGS,
     "take() -> bytes\n\nThe complete message, once; without a copy."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AssemblyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tidewire._speedups.Assembly",
    .tp_doc = "A message of known size, filled piece by piece, then taken as bytes.",
    .tp_basicsize = sizeof(Assembly),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = assembly_new,
    .tp_dealloc = (destructor)assembly_dealloc,
    .tp_methods = assembly_methods,
    .tp_as_buffer = &assembly_as_buffer,
};

static PyMethodDef methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes\n\nMask or unmask data with a 4-byte key."},
    {"copy_unmasked", (PyCFunction)(void (*)(void))copy_unmasked, METH_FASTCALL,
     "copy_unmasked(data, start, n, mask, phase) -> bytes\n\n"
     "data[start:start + n] unmasked from mask index phase, or copied if mask is None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tidewire._speedups",
    "Compiled twins of tidewire.protocol hot paths.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&AssemblyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Assembly", (PyObject *)&AssemblyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
