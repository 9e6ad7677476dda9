# C types for the compiled twin of messages.py (see setup.py).

cdef class MessageQueue:
    cdef public object high
    cdef public object low
    cdef public bint closed
    cdef public object drained
    cdef object _pause
    cdef object _resume
    cdef list _queue
    cdef Py_ssize_t _head
    cdef object _waiter
    cdef bint _handed
    cdef bint _paused
    cdef object _loop

    cpdef put(self, message)
