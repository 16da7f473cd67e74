#pragma once
#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro casting -1 to a function pointer, which Swift
// cannot import; this constant stands in for it.
static const sqlite3_destructor_type devif_sqlite_transient = SQLITE_TRANSIENT;
