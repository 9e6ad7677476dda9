/* Compiled twins of hot functions in tidewire.protocol.
 *
 * Each function here has a pure-Python twin with the same signature; see
 * tidewire/protocol/mask.py. TIDEWIRE_NO_SPEEDUPS=1 selects the twins.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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
    const unsigned char *m = (const unsigned char *)mask.buf;
    uint32_t m32;
    memcpy(&m32, m, 4);
    uint64_t m64 = ((uint64_t)m32 << 32) | m32;
    Py_ssize_t i = 0;
    /* Release the GIL for large payloads: threads may mask in parallel. */
    if (n >= 65536) {
        Py_BEGIN_ALLOW_THREADS
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, in + i, 8);
            w ^= m64;
            memcpy(out + i, &w, 8);
        }
        Py_END_ALLOW_THREADS
    } else {
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, in + i, 8);
            w ^= m64;
            memcpy(out + i, &w, 8);
        }
    }
    for (; i < n; i++)
        out[i] = in[i] ^ m[i & 3];
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes\n\nMask or unmask data with a 4-byte key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "tidewire._speedups",
    "Compiled twins of tidewire.protocol hot paths.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
