"""Per-row kinds of a payload column (int8), shared by the columns and their list part."""

#: LIST (a list of scalars, ``engine.list_column``) came last, so rows files written before it read the same.
MISSING, NULL, FALSE, TRUE, FLOAT, INT, STR, COMPLEX, BIG_INT, LIST = range(10)
#: Ints of larger magnitude than this lose precision as float64: their exact value is kept aside.
EXACT_FLOAT_INT = 2 ** 53
