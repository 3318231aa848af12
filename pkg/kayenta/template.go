package kayenta

import (
	"fmt"
	"strings"
)

// expandTemplate substitutes ${name} in tpl from vars as Apache Commons
// Text's StringSubstitutor does with Kayenta's settings (QueryConfigUtils):
// "$${" is a literal "${", "${name:-default}" has a default, an undefined
// name without one is an error, and substituted values are themselves
// expanded (a cycle is an error).
func expandTemplate(tpl string, vars map[string]string) (string, error) {
	return expand(tpl, vars, nil)
}

func expand(tpl string, vars map[string]string, stack []string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tpl); {
		if strings.HasPrefix(tpl[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(tpl[i:], "${") {
			b.WriteByte(tpl[i])
			i++
			continue
		}
		// Find the matching "}", counting nested "${".
		depth, j := 1, i+2
		for j < len(tpl) && depth > 0 {
			switch {
			case strings.HasPrefix(tpl[j:], "${"):
				depth++
				j += 2
			case tpl[j] == '}':
				depth--
				j++
			default:
				j++
			}
		}
		if depth > 0 { // no end: literal
			b.WriteString(tpl[i:])
			break
		}
		name := tpl[i+2 : j-1]
		def, hasDefault := "", false
		if k := strings.Index(name, ":-"); k >= 0 {
			name, def, hasDefault = name[:k], name[k+2:], true
		}
		value, ok := vars[name]
		if !ok {
			if !hasDefault {
				return "", fmt.Errorf("Cannot resolve variable '%s' (enableSubstitutionInVariables=false).", name)
			}
			value = def
		}
		for _, s := range stack {
			if s == name {
				return "", fmt.Errorf("Infinite loop in property interpolation of %s: %s", tpl, strings.Join(append(stack, name), "->"))
			}
		}
		v, err := expand(value, vars, append(stack, name))
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		i = j
	}
	return b.String(), nil
}
