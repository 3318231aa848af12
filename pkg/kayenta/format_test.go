package kayenta

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/levitated/levitated/pkg/storage"
)

// TestKeyLayoutGolden pins the key layout of FORMAT.md.
func TestKeyLayoutGolden(t *testing.T) {
	const id = "01JD2Q3V4W5X6Y7Z8A9B0C1D2E"
	for _, tc := range []struct {
		key  []byte
		want string
	}{
		{key(7, kindConfig, "cfg-1"), "00000007" + "50" + hex.EncodeToString([]byte("cfg-1"))},
		{key(7, kindExecution, id), "00000007" + "51" + hex.EncodeToString([]byte(id))},
		{key(7, kindByApp, "checkout", id), "00000007" + "52" + hex.EncodeToString([]byte("checkout")) + "00" + hex.EncodeToString([]byte(id))},
		{pendingKey(7, id), "00000000" + "53" + "00000007" + hex.EncodeToString([]byte(id))},
		{key(7, kindPairs, id), "00000007" + "54" + hex.EncodeToString([]byte(id))},
	} {
		require.Equal(t, tc.want, hex.EncodeToString(tc.key))
	}
	for _, k := range []byte{kindConfig, kindExecution, kindByApp, kindPending, kindPairs} {
		require.GreaterOrEqual(t, k, storage.AnalysisKindMin)
		require.LessOrEqual(t, k, storage.AnalysisKindMax)
	}
	b, err := encodeRecord(configRecord{})
	require.NoError(t, err)
	require.Equal(t, byte(0x01), b[0])
	require.Error(t, decodeRecord([]byte{0x02, '{', '}'}, &configRecord{}))
}
