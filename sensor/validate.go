package sensor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// ValidateFiles checks a config file (empty: the embedded default) and its persona
// (or the persona given), without opening anything, and returns every problem found.
func ValidateFiles(configPath, persona string, specs []protocols.Spec) (Problems, error) {
	cfg, err := LoadConfig(configPath)
	var ps Problems
	if errors.As(err, &ps) {
		return ps, nil
	}
	if err != nil {
		return nil, err
	}
	ps = append(ps, cfg.Validate()...)
	if persona == "" {
		persona = cfg.Persona
	}
	p, err := LoadPersona(persona)
	var pps Problems
	switch {
	case errors.As(err, &pps):
		ps = append(ps, pps...)
	case err != nil:
		return append(ps, Problem{Msg: err.Error()}), nil
	}
	return append(ps, p.check(specs)...), nil
}

// check decodes every protocol section of the persona and builds each handler once,
// so that semantic errors in protocol configuration show up too.
func (p *Persona) check(specs []protocols.Spec) Problems {
	var ps Problems
	byName := map[string]protocols.Spec{}
	for _, sp := range specs {
		byName[sp.Name] = sp
	}
	for name := range p.Services {
		if _, ok := byName[name]; !ok {
			ps = append(ps, Problem{File: p.file, Msg: fmt.Sprintf("services.%s: unknown protocol (known: %s)", name, specNames(specs))})
		}
	}
	for name, n := range p.Protocols {
		if _, ok := byName[name]; !ok {
			ps = append(ps, Problem{File: p.file, Line: n.Line, Msg: fmt.Sprintf("protocols.%s: unknown protocol (known: %s)", name, specNames(specs))})
		}
	}
	// Build the handlers with an identity as an install would have it.
	st := &State{Personas: map[string]PersonaValues{}}
	id, err := st.identity(p)
	if err != nil {
		return append(ps, Problem{File: p.file, Msg: err.Error()})
	}
	env := protocols.Env{Identity: id, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Boot: time.Now(), Now: time.Now}
	for _, sp := range specs {
		_, served := p.Services[sp.Name]
		_, configured := p.Protocols[sp.Name]
		if !served && !configured {
			continue
		}
		cfg, cps := p.ProtocolConfig(sp)
		if len(cps) > 0 {
			ps = append(ps, cps...)
			continue
		}
		if _, err := sp.New(env, cfg); err != nil {
			line := 0
			if n, ok := p.Protocols[sp.Name]; ok {
				line = n.Line
			}
			ps = append(ps, Problem{File: p.file, Line: line, Msg: fmt.Sprintf("protocols.%s: %v", sp.Name, err)})
		}
	}
	return ps
}
