# bash completion for zdm (zdm completion bash).
#
#   source <(zdm completion bash)
#   or install as /usr/local/share/bash-completion/completions/zdm
#
# Commands, flags, step ids, run ids and templates come from zdm itself
# (zdm __complete ...), so they are those of the zdm being completed.

# the candidates zdm prints for __complete ARGS..., errors discarded
_zdm_ask()
{
	"${_zdm_bin:-zdm}" __complete "$@" 2>/dev/null
}

_zdm_words()
{
	local IFS=$'\n'
	COMPREPLY+=($(compgen -W "$1" -- "$cur"))
}

_zdm_runbooks()
{
	local IFS=$'\n'
	compopt -o filenames 2>/dev/null
	COMPREPLY+=($(compgen -f -X '!*.yml' -- "$cur") $(compgen -f -X '!*.yaml' -- "$cur")
	    $(compgen -d -- "$cur"))
}

_zdm()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev= cmd=${COMP_WORDS[1]}
	local _zdm_bin=${COMP_WORDS[0]}
	local i w runbook= valued npos=0
	local -a state=()

	COMPREPLY=()
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	# bash splits --opt=value and k=v at '=' (COMP_WORDBREAKS)
	[[ $prev == = && COMP_CWORD -gt 2 ]] && prev=${COMP_WORDS[COMP_CWORD - 2]}
	[[ $_zdm_bin == */* || $_zdm_bin == zdm ]] || _zdm_bin=zdm
	if ((COMP_CWORD == 1)); then
		_zdm_words "$(_zdm_ask commands)"
		return 0
	fi
	valued=$'\n'$(_zdm_ask valued)$'\n'

	# what the line says so far: the runbook, the state, the arguments
	for ((i = 2; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		=)
			((i++))	# the value of --opt=value, or the v of --var k=v
			continue
			;;
		--state-dir | --state | --schema | --plugin-path | --var | --vars-file)
			state+=("$w" "${COMP_WORDS[i + 1]}")
			((i++))
			continue
			;;
		--*=*) continue ;;
		-*)
			[[ $valued == *$'\n'$w$'\n'* ]] && ((i++))
			continue
			;;
		esac
		((npos++))
		[[ -z $runbook && ($w == *.yml || $w == *.yaml) ]] && runbook=$w
	done

	# the value of an option
	case $prev in
	--fail-at | --approve | --only)
		[[ -n $runbook ]] && _zdm_words "$(_zdm_ask steps "$runbook" "${state[@]}")"
		return 0
		;;
	--in-doubt)
		_zdm_words $'retry\nskip'
		return 0
		;;
	--output)
		if [[ $cmd == init ]]; then
			compopt -o filenames 2>/dev/null
			local IFS=$'\n'
			COMPREPLY=($(compgen -f -- "$cur"))
		else
			_zdm_words $'text\njson'
		fi
		return 0
		;;
	--state-dir | --plugin-path)
		compopt -o filenames 2>/dev/null
		local IFS=$'\n'
		COMPREPLY=($(compgen -d -- "$cur"))
		return 0
		;;
	--vars-file | --junit | --html)
		compopt -o filenames 2>/dev/null
		local IFS=$'\n'
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0
		;;
	--status)
		_zdm_words $'running\nrolling_back\nstale\nin_doubt\npaused\ninterrupted\nsucceeded\nfailed\naborted\nrolled_back\nrollback_failed\nunreadable'
		return 0
		;;
	esac
	if [[ $valued == *$'\n'$prev$'\n'* ]]; then
		return 0	# a value zdm cannot guess (a duration, a name, a reason)
	fi

	if [[ $cur == -* ]]; then
		_zdm_words "$(_zdm_ask flags "$cmd")"
		return 0
	fi

	case $cmd in
	run | plan | validate | drill)
		((npos == 0)) && _zdm_runbooks
		;;
	resume | rollback | status | log | report)
		if ((npos == 0)); then
			_zdm_words "$(_zdm_ask runs "${state[@]}")"
			_zdm_runbooks
		fi
		;;
	approve | pause | abort | promote)
		((npos == 0)) && _zdm_words "$(_zdm_ask runs "${state[@]}")"
		;;
	init)
		((npos == 0)) && _zdm_words "$(_zdm_ask templates)"
		;;
	completion)
		((npos == 0)) && _zdm_words $'bash\nzsh'
		;;
	help)
		((npos == 0)) && _zdm_words "$(_zdm_ask commands)"
		;;
	lock)
		((npos == 0)) && _zdm_words status
		;;
	state)
		((npos == 0)) && _zdm_words $'init\npush'
		;;
	audit)
		((npos == 0)) && _zdm_words $'verify\nexport'
		;;
	esac
	return 0
}

complete -F _zdm zdm
