# C types for the compiled twin of reader.py (see setup.py): same source,
# compiled by Cython in pure-Python mode under the name _reader_c.

cimport cython

cdef Py_ssize_t _NO_FRAME

cdef class Reader:
    cdef public bint expect_mask
    cdef public object max_size
    cdef public object max_frame_size
    cdef public object deflate
    cdef bytes _buf
    cdef Py_ssize_t _remaining
    cdef int _opcode
    cdef bint _fin
    cdef object _mask
    cdef Py_ssize_t _offset
    cdef int _msg_opcode
    cdef bint _compressed
    cdef list _chunks
    cdef list _texts
    cdef Py_ssize_t _size
    cdef object _decoder
    cdef object _whole

    @cython.locals(buf=bytes, pos=Py_ssize_t, used=Py_ssize_t, avail=Py_ssize_t,
                   remaining=Py_ssize_t, n=Py_ssize_t, controls=bint)
    cpdef bint feed(self, data, list events) except? -1
    # length stays an object: a Python sum checks it against max_size.
    @cython.locals(avail=Py_ssize_t, b0=int, b1=int, size=Py_ssize_t, masked=int,
                   opcode=int, fin=bint, rsv1=bint)
    cdef Py_ssize_t _read_header(self, bytes buf, Py_ssize_t pos) except -1
    cdef bytes _take(self, bytes buf, Py_ssize_t pos, Py_ssize_t n)
    cdef _control(self, bytes payload, list events)
    cpdef space(self)
    cpdef bint filled(self, Py_ssize_t n, list events) except? -1
    cdef _put(self, chunk, list events)
    cdef _assembled(self, Py_ssize_t n, list events)
    @cython.locals(n=Py_ssize_t, last=bint)
    cdef _data(self, bytes piece, bint frame_end, list events)
    cdef object _limit(self)
    cdef _finish(self, list events)
