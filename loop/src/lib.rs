//! momoko-loop: a Tornado-like single-threaded IoLoop on mio. It knows nothing of PostgreSQL.
