package rollup

// SetValBlock sets the size of the blocks of a part's values, until the
// returned function sets it back.
func SetValBlock(n int) func() {
	old := valBlock
	valBlock = n
	return func() { valBlock = old }
}

// Unparen is unparen: e without its enclosing parentheses.
var Unparen = unparen
