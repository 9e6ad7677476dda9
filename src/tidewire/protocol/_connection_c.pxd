# C types for the compiled twin of connection.py (see setup.py): attributes in
# the object's struct instead of slots looked up by name.

from ._reader_c cimport Reader as _CReader  # feed() called through its C table

cdef class Connection:
    cdef readonly object side
    cdef public object state
    cdef public object max_size
    cdef public object deflate
    cdef public _CReader reader
    cdef public object close_rcvd
    cdef public object close_sent
    cdef public object close_rcvd_then_sent
    cdef public object exc
    cdef public bint defer_failures
    cdef public object pending_failure
    cdef public list _events
    cdef public list _out
    cdef public bint _failed
    cdef public bint _sending_fragments
    cdef public bint _compress_fragments
    cdef bytes _masks
    cdef Py_ssize_t _mask_at

    # Called per message by the compiled asyncio connection, through the C table.
    cpdef receive_data(self, data)
    cpdef receive_space(self)
    cpdef bint received_into(self, Py_ssize_t n) except? -1
    cdef bint _ignoring(self)
    cpdef list events_received(self)
    cpdef list data_to_send(self)
    cpdef send_text(self, data, bint fin=*)
    cpdef send_binary(self, data, bint fin=*)
    cpdef _send_data(self, opcode, data, bint fin)
