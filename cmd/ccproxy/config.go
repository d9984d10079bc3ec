package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// settings resolves a command's values from, in order of precedence: flags
// set on the command line, CCPROXY_* environment variables, the YAML config
// file, the flags' defaults. Every getter validates and returns a usage error
// naming the flag, the config key and the variable, so a bad value exits 2
// before anything listens.
type settings struct {
	v    *viper.Viper
	cmd  *cobra.Command
	file string // config file in use, "" if none
}

// setup is the start of every long-running command: its settings, its
// logger, and a log line naming the config file in use.
func setup(cmd *cobra.Command) (*settings, *slog.Logger, error) {
	s, err := loadSettings(cmd)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(s, cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	if s.file != "" {
		log.Info("config", "file", s.file)
	}
	return s, log, nil
}

// defaultConfigPaths are searched when --config is not given.
var defaultConfigPaths = []string{"ccproxy.yaml", "/etc/ccproxy/ccproxy.yaml"}

func loadSettings(cmd *cobra.Command) (*settings, error) {
	v := viper.New()
	v.SetEnvPrefix("CCPROXY")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	known := map[string]bool{}
	kinds := map[string]string{} // flag name → pflag value type
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		known[f.Name] = true
		kinds[f.Name] = f.Value.Type()
		if err := v.BindPFlag(f.Name, f); err != nil && bindErr == nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return nil, bindErr
	}
	s := &settings{v: v, cmd: cmd}

	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = os.Getenv("CCPROXY_CONFIG")
	}
	explicit := path != ""
	if !explicit {
		for _, p := range defaultConfigPaths {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		return s, nil
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		var nf viper.ConfigFileNotFoundError
		if errors.As(err, &nf) || os.IsNotExist(errors.Unwrap(err)) {
			return nil, usageErrorf("--config %s: file not found", path)
		}
		return nil, usageErrorf("--config %s: %v", path, err)
	}
	s.file = path
	// A key this command does not know is a typo or a key of another
	// command: say so instead of ignoring it. Keys of other commands are
	// allowed in a shared file only when listed in sharedKeys.
	var unknown []string
	for _, k := range v.AllKeys() {
		top := strings.SplitN(k, ".", 2)[0]
		if !known[top] && !sharedKeys[top] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, usageErrorf("config file %s: unknown key %q (see configs/ccproxy.yaml for every key)", path, unknown[0])
	}
	// A list or a map where one value belongs would read as "" and quietly
	// become the default (for idle-timeout: no timeout at all, for
	// offline: online): refuse it.
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !v.InConfig(name) || cmd.Flags().Changed(name) {
			continue
		}
		kind := kinds[name]
		switch v.Get(name).(type) {
		case map[string]any:
			if !strings.HasPrefix(kind, "stringTo") { // pflag's map kinds
				return nil, usageErrorf("config file %s: %s takes a single value, not a map", path, where(name))
			}
		case []any:
			if !strings.HasSuffix(kind, "Slice") && !strings.HasSuffix(kind, "Array") {
				return nil, usageErrorf("config file %s: %s takes a single value, not a list", path, where(name))
			}
		}
	}
	return s, nil
}

// sharedKeys may appear in the config file even where the running command
// has no such flag: one file serves the relay and its subcommands.
var sharedKeys = map[string]bool{
	"listen": true, "upstream": true, "forward": true, "plain-ports": true, "dial-timeout": true,
	"idle-timeout": true, "client-hello-timeout": true, "drain-timeout": true, "max-connections": true, "issuer-deadline": true,
	"admin-listen": true, "trace-file": true, "trace-file-max-size": true, "trace-file-max-files": true, "trace-every-attempt": true, "trace-first-attempts": true, "otlp-endpoint": true, "manifest": true,
	"coordinator-policy-hash": true, "snp-trusted-roots": true, "tdx-trusted-roots": true,
	"offline": true, "log-format": true, "log-level": true, "probe-cache": true, "probe": true,
	"output": true, "config": true, "coordinator": true, "nonce-in": true, "tls-max-version": true,
	"timeout": true, "nonce": true,
	// tunnel serve / connect
	"quic-listen": true, "server": true, "route": true, "cert": true, "key": true, "peer-fingerprint": true,
	"max-streams": true, "tunnel-idle-timeout": true, "keepalive": true, "reconnect-max": true, "verdict-timeout": true,
	"ui-listen": true,
}

// where names every place a key can be set, for error messages.
func where(key string) string {
	return fmt.Sprintf("--%s (config key %q, env CCPROXY_%s)", key, key, strings.ToUpper(strings.ReplaceAll(key, "-", "_")))
}

func (s *settings) raw(key string) string {
	return strings.TrimSpace(s.v.GetString(key))
}

func (s *settings) String(key string) string { return s.raw(key) }

func (s *settings) Duration(key string) (time.Duration, error) {
	r := s.raw(key)
	if r == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r)
	if err != nil {
		return 0, usageErrorf("%s: %q is not a duration (e.g. 10s, 1m30s)", where(key), r)
	}
	if d < 0 {
		return 0, usageErrorf("%s: %q must not be negative", where(key), r)
	}
	return d, nil
}

func (s *settings) Int(key string) (int, error) {
	r := s.raw(key)
	if r == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(r)
	if err != nil || n < 0 {
		return 0, usageErrorf("%s: %q is not a non-negative integer", where(key), r)
	}
	return n, nil
}

func (s *settings) Bool(key string) (bool, error) {
	r := s.raw(key)
	if r == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(r)
	if err != nil {
		return false, usageErrorf("%s: %q is not true or false", where(key), r)
	}
	return b, nil
}

// StringList reads a repeatable flag, a YAML list, or a space/comma
// separated environment variable.
func (s *settings) StringList(key string) []string {
	var out []string
	for _, item := range s.v.GetStringSlice(key) {
		out = append(out, strings.FieldsFunc(item, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })...)
	}
	return out
}

// Enum reads a value that must be one of allowed.
func (s *settings) Enum(key string, allowed ...string) (string, error) {
	r := s.raw(key)
	for _, a := range allowed {
		if r == a {
			return r, nil
		}
	}
	return "", usageErrorf("%s: %q is not one of %s", where(key), r, strings.Join(allowed, ", "))
}
