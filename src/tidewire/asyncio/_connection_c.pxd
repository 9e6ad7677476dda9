# C types for the compiled twin of connection.py (see setup.py): attributes in
# the object's struct instead of slots looked up by name.

cimport cython

from ..protocol._connection_c cimport Connection as _Protocol
from ._messages_c cimport MessageQueue as _Queue

cdef class Connection:
    cdef public object protocol
    cdef public object ping_interval
    cdef public object ping_timeout
    cdef public object close_timeout
    cdef public object write_limit
    cdef public object _id
    cdef public object logger
    cdef public object loop
    cdef public object transport
    cdef public _Queue messages
    cdef public object closed
    cdef public dict _pings
    cdef public object _drain
    cdef public bint _write_paused
    cdef public object _keepalive
    cdef public object _close_timer
    cdef public object _fail_timer
    cdef public bint _reading_paused
    cdef public bint _sock_closed
    cdef public bint _received
    cdef public bint _flush_due
    cdef public object _on_message
    cdef public bint _delivering
    cdef object __weakref__

    @cython.locals(p=_Protocol)
    cpdef _process(self, data=*)
    @cython.locals(p=_Protocol)
    cpdef send_nowait(self, message)
